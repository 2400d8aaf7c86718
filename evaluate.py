"""Evaluate a checkpoint: ``python evaluate.py checkpoint=RUN/checkpoints/best.pt``."""

import hydra
from omegaconf import DictConfig

from sat import cli


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float:
    cli.check_config(cfg)  # a typo is refused before torch is imported
    # the task is imported inside (torch with it): a signal while torch loads is one line
    return cli.run_task("sat.tasks.evaluate", cfg).get("test/acc", float("nan"))


if __name__ == "__main__":
    cli.main(main, config_name="evaluate")
