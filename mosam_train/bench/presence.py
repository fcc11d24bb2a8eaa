"""How well a model's object score tells a present object from an absent one, frame by frame.

    python -m mosam_train.bench.presence ckpt=PATH data=synthetic_long [sam2=micro]
        [EVAL OVERRIDES ...]

Why: SAM 2 blanks an object's mask where its object-score logit is <= 0, and MoSAM reads
that score twice (the frame-confidence head's input, the visibility gate's). Two questions
have different answers: is the score right at SAM 2's threshold (the false positives on
absent frames that `eval.py` reports), and does it order frames by presence at all (its
ROC AUC, which is what a learned head reading it as an input can use)? A score with a high
AUC but many false positives at 0 is informative and miscalibrated; an AUC near 0.5 is
no signal. It tracks as `eval.py` does (same overrides, each object prompted on the frame it
first appears, the videos `eval.py` reads: `data.test_split=null` for val) and scores every
annotated frame after each object's prompt. The last line on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import track
from rich.table import Table
from torchmetrics.functional.classification import binary_auroc, binary_roc

from mosam_train.data.video import VideoRecord
from mosam_train.inference.sources import RecordFrames
from mosam_train.inference.vos import Propagator, first_appearance_prompts
from mosam_train.tasks.inference_model import autocast, compose_eval, mask_propagator
from mosam_train.tasks.vos_evaluation import evaluated_records


def presence_scores(
    propagator: Propagator, record: VideoRecord, image_size: int
) -> tuple[list[float], list[bool]]:
    """(object-score logit, present in the ground truth) of every object on every annotated
    frame after the one it is prompted on."""
    first = record.first_appearance()
    annotated = set(record.annotated_frames)
    scores: list[float] = []
    present: list[bool] = []
    source = RecordFrames(record, image_size)
    for result in propagator.propagate(source, first_appearance_prompts(record, first)):
        t = result.frame_idx
        if t not in annotated:
            continue
        masks = record.load_masks(t)
        logits = result.object_scores.tolist()
        for k, oid in enumerate(record.object_ids):
            if oid in first and t > first[oid]:
                scores.append(float(logits[k]))
                present.append(bool(masks[k].any()))
    return scores, present


def summarise(scores: Sequence[float], present: Sequence[bool]) -> dict[str, float]:
    """ROC AUC; at SAM 2's threshold (logit > 0), the share of absent frames called present
    and of present frames called absent; the same at the threshold that maximises Youden's
    J (true-positive minus false-positive rate), which shows what a recalibrated score
    would give."""
    s = torch.tensor(scores, dtype=torch.float64)
    y = torch.tensor(present, dtype=torch.long)
    absent = y == 0
    if not absent.any() or absent.all():
        raise ValueError(
            "bench.presence needs frames with the object present and frames without it; "
            f"these have {int((~absent).sum())} present and {int(absent.sum())} absent. "
            "Fix: evaluate a split with absences (e.g. data=synthetic_long)."
        )
    # torchmetrics reads scores outside [0, 1] as logits; probabilities keep its thresholds
    # in one known space, mapped back to logits for the report
    prob = torch.sigmoid(s)
    fpr, tpr, thresholds = binary_roc(prob, y)
    best = thresholds[int(torch.argmax(tpr - fpr))]

    def rates(called: torch.Tensor) -> tuple[float, float]:
        return float(called[absent].float().mean()), float((~called[~absent]).float().mean())

    fp0, fn0 = rates(s > 0)  # SAM 2: present where the logit is > 0
    fpb, fnb = rates(prob >= best)
    return {
        "auroc": float(binary_auroc(prob, y)),
        "frames_present": int((~absent).sum()),
        "frames_absent": int(absent.sum()),
        "fp_absent_at_0": fp0,
        "fn_present_at_0": fn0,
        "best_threshold": float(torch.logit(best)),
        "fp_absent_at_best": fpb,
        "fn_present_at_best": fnb,
    }


def presence(cfg: DictConfig) -> dict[str, float]:
    """`summarise` over the videos `eval.py` would read under `cfg`."""
    propagator, image_size = mask_propagator(cfg, "bench.presence")
    datamodule = instantiate(cfg.data, _convert_="all")
    records = evaluated_records(datamodule, cfg.data.get("val_max_videos"))
    scores: list[float] = []
    present: list[bool] = []
    for record in track(records, description="object scores"):
        with autocast(cfg):
            s, p = presence_scores(propagator, record, image_size)
        scores += s
        present += p
    return summarise(scores, present)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.bench.presence",
        description="ROC AUC and error rates of a model's object score for present against "
        "absent objects; other arguments (ckpt=..., data=..., sam2=...) are eval.py's "
        "overrides.",
    )
    _, overrides = parser.parse_known_args(argv)
    found = presence(compose_eval(overrides))
    table = Table(title="object score: present against absent frames")
    for column in ("threshold", "absent frames called present", "present frames called absent"):
        table.add_column(column, justify="right")
    table.add_row(
        "0 (SAM 2's)", f"{found['fp_absent_at_0']:.1%}", f"{found['fn_present_at_0']:.1%}"
    )
    table.add_row(
        f"{found['best_threshold']:.2f} (best Youden's J)",
        f"{found['fp_absent_at_best']:.1%}",
        f"{found['fn_present_at_best']:.1%}",
    )
    console = Console()
    console.print(table)
    console.print(
        f"ROC AUC {found['auroc']:.3f} over {found['frames_present']} present and "
        f"{found['frames_absent']} absent object-frames"
    )
    print(json.dumps(found))


if __name__ == "__main__":
    main()
