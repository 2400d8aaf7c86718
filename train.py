"""Train a model: ``python train.py method=sat noise.rate=0.4`` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from sat import tasks


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    summary = tasks.run_task(tasks.train, cfg)
    return summary["final"].get("test/acc", float("nan"))  # the metric a sweeper optimises


if __name__ == "__main__":
    main()
