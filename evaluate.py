"""Evaluate a checkpoint: ``python evaluate.py checkpoint=RUN/checkpoints/best.pt``."""

import hydra
from omegaconf import DictConfig

from sat import cli, tasks


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float:
    return cli.run_task(tasks.evaluate, cfg).get("test/acc", float("nan"))


if __name__ == "__main__":
    cli.main(main)
