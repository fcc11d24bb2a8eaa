"""Evaluate: `python eval.py ckpt=PATH [data=...] [sam2=...]` (see README)."""

import hydra
from omegaconf import DictConfig

from mosam_train import tasks


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> float:
    return float(tasks.evaluate(cfg)["JF"])


if __name__ == "__main__":
    main()
