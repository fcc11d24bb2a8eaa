"""Evaluate: `python eval.py ckpt=PATH [data=...] [sam2=...]`; box tracking (LaSOT, GOT-10k):
`python eval.py task=tracking data=tracking/<lasot|got10k|synthetic_lasot> ckpt=PATH` (see README)."""

import hydra
from omegaconf import DictConfig

from mosam_train.startup import start
from mosam_train.tasks import evaluate, evaluate_tracking

start()  # before Hydra starts: see mosam_train.startup


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> float:
    if cfg.get("task", "vos") == "tracking":
        return float(evaluate_tracking(cfg)["score"])
    if cfg.get("task", "vos") != "vos":
        raise ValueError(f"task={cfg.task}: use vos (masks, J&F) or tracking (boxes)")
    return float(evaluate(cfg)["JF"])


if __name__ == "__main__":
    main()
