"""Robustness of checkpoints: ``python attack.py checkpoint=PATH attack=pgd20``."""

import hydra
from omegaconf import DictConfig

from sat import cli


@hydra.main(config_path="conf", config_name="attack", version_base="1.3")
def main(cfg: DictConfig) -> float:
    cli.check_config(cfg)  # a typo is refused before torch is imported
    # the task is imported inside (torch with it): a signal while torch loads is one line
    return cli.run_task("sat.tasks.attack", cfg)["best"]["robust"]


if __name__ == "__main__":
    cli.main(main, config_name="attack")
