"""Train a model: ``python train.py method=sat noise.rate=0.4`` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from sat import cli


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    cli.check_config(cfg)  # a typo is refused before torch is imported
    summary = cli.run_task("sat.tasks.train", cfg)  # imported inside: a signal while torch loads is one line
    from sat.tasks import train

    return train.objective(summary, cfg)  # the value a sweeper optimises (validation accuracy by default)


if __name__ == "__main__":
    cli.main(main, resumable=True, config_name="train")
