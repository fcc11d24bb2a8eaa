"""Train: `python train.py [experiment=...] [key=value ...]` (see README)."""

import hydra
from omegaconf import DictConfig

from mosam_train.startup import start
from mosam_train.tasks import train

start()  # before Hydra starts: see mosam_train.startup


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
