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

A MoSAM checkpoint is scored on what it reads besides (the engine's observers give them):
its visibility gate, against presence in the same way (the gate scales MGP's prompts by
its probability, so its mean on absent frames is how hard MGP still pushes there), and its
frame-confidence head, against whether the frame is a good memory, IoU >= 0.3 (the
oracle's gate), with what its `model.stms.min_confidence` leaves out.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
from mosam_train.metrics.jf import jaccard
from mosam_train.tasks.inference_model import autocast, compose_eval, mask_propagator
from mosam_train.tasks.vos_evaluation import evaluated_records

# a frame is a good memory where its mask's IoU is at least this (the oracle's gate on
# the test bed, README "The shipped base"); the frame head is scored against it
GOOD_MEMORY_IOU = 0.3
# MoSAM's per-frame outputs scored besides the object score (logits, one per object)
VISIBILITY, FRAME_SCORE = "visibility_logit", "frame_score"


@dataclass
class Readouts:
    """Per object and annotated frame after the one it is prompted on: its object-score
    logit, whether the ground truth has it, its mask's IoU (absent and predicted empty:
    1); and where the model outputs them on that frame, its visibility-gate logit (with
    presence) and its frame-head logit (with the IoU)."""

    scores: list[float] = field(default_factory=list)
    present: list[bool] = field(default_factory=list)
    ious: list[float] = field(default_factory=list)
    visibility: list[tuple[float, bool]] = field(default_factory=list)
    frame: list[tuple[float, float]] = field(default_factory=list)


def presence_scores(propagator: Propagator, record: VideoRecord, image_size: int) -> Readouts:
    """`Readouts` of every object on every annotated frame after its prompt."""
    first = record.first_appearance()
    annotated = set(record.annotated_frames)
    seen: dict[tuple[int, int], dict[str, float]] = {}

    def observe(t: int, object_ids: list[int], out: dict[str, Any]) -> None:
        for key in (VISIBILITY, FRAME_SCORE):
            value = out.get(key)
            if value is not None and value.shape[0] == len(object_ids):  # one row per object
                rows = value.reshape(len(object_ids), -1)[:, 0].tolist()
                for oid, v in zip(object_ids, rows, strict=True):
                    seen.setdefault((t, oid), {})[key] = float(v)

    observers = getattr(propagator, "observers", [])  # the engine's; baselines have none
    observers.append(observe)
    found = Readouts()
    try:
        source = RecordFrames(record, image_size)
        for result in propagator.propagate(source, first_appearance_prompts(record, first)):
            t = result.frame_idx
            if t not in annotated:
                continue
            masks = record.load_masks(t)
            logits = result.object_scores.tolist()
            for k, oid in enumerate(record.object_ids):
                if oid in first and t > first[oid]:
                    present, iou = (
                        bool(masks[k].any()),
                        jaccard((result.logits[k] > 0).cpu().numpy(), masks[k].astype(bool)),
                    )
                    found.scores.append(float(logits[k]))
                    found.present.append(present)
                    found.ious.append(iou)
                    model = seen.pop((t, oid), {})
                    if VISIBILITY in model:
                        found.visibility.append((model[VISIBILITY], present))
                    if FRAME_SCORE in model:
                        found.frame.append((model[FRAME_SCORE], iou))
    finally:
        if observe in observers:
            observers.remove(observe)
    return found


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
        # the mean probability: how much of a push scaled by it is left on each kind of frame
        "mean_prob_absent": float(prob[absent].mean()),
        "mean_prob_present": float(prob[~absent].mean()),
    }


def memory_summary(
    logits: Sequence[float], ious: Sequence[float], min_confidence: float | None
) -> dict[str, Any]:
    """The frame head against good memories (IoU >= GOOD_MEMORY_IOU): ROC AUC (None with
    only one kind of frame); and with `min_confidence` (MoSAM leaves out frames rated
    below it), the share of frames left out, the share of those that are bad memories,
    and of the kept frames that are."""
    prob = torch.sigmoid(torch.tensor(logits, dtype=torch.float64))
    good = torch.tensor(ious, dtype=torch.float64) >= GOOD_MEMORY_IOU
    found: dict[str, Any] = {
        # no order to score where every frame is good, or none is
        "auroc": float(binary_auroc(prob, good.long())) if good.any() and not good.all() else None,
        "frames_good": int(good.sum()),
        "frames_bad": int((~good).sum()),
    }
    if min_confidence is not None:
        out = prob < min_confidence
        found.update(
            min_confidence=float(min_confidence),
            left_out=float(out.float().mean()),
            bad_among_left_out=float((~good[out]).float().mean()) if out.any() else 0.0,
            bad_among_kept=float((~good[~out]).float().mean()) if (~out).any() else 0.0,
        )
    return found


def presence(cfg: DictConfig) -> dict[str, Any]:
    """`summarise` of the object score over the videos `eval.py` would read under `cfg`;
    with a MoSAM model, its visibility gate's (`visibility_gate`) and its frame head's
    `memory_summary` (`frame_score`)."""
    propagator, image_size = mask_propagator(cfg, "bench.presence")
    datamodule = instantiate(cfg.data, _convert_="all")
    records = evaluated_records(datamodule, cfg.data.get("val_max_videos"))
    found = Readouts()
    for record in track(records, description="object scores"):
        with autocast(cfg):
            one = presence_scores(propagator, record, image_size)
        for name, values in vars(found).items():
            values += getattr(one, name)
    summary: dict[str, Any] = summarise(found.scores, found.present)
    if found.visibility:
        summary["visibility_gate"] = summarise(*zip(*found.visibility, strict=True))
    if found.frame:
        # the loaded model's (a checkpoint keeps its own; eval's parts_off may zero it)
        stms = getattr(getattr(propagator, "model", None), "stms", None)
        min_confidence = getattr(stms, "min_confidence", None)
        summary["frame_score"] = memory_summary(*zip(*found.frame, strict=True), min_confidence)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.bench.presence",
        description="ROC AUC and error rates of a model's object score (and MoSAM's visibility "
        "gate and frame head) for present against absent objects; other arguments (ckpt=..., data=..., sam2=...) are eval.py's "
        "overrides.",
    )
    _, overrides = parser.parse_known_args(argv)
    found = presence(compose_eval(overrides))
    console = Console()
    scored = [("object score", found)]
    if "visibility_gate" in found:
        scored.append(("MoSAM's visibility gate", found["visibility_gate"]))
    for name, summary in scored:
        table = Table(title=f"{name}: present against absent frames")
        for column in ("threshold", "absent frames called present", "present frames called absent"):
            table.add_column(column, justify="right")
        table.add_row(
            "0 (SAM 2's; the gate: 0.5)",
            f"{summary['fp_absent_at_0']:.1%}",
            f"{summary['fn_present_at_0']:.1%}",
        )
        table.add_row(
            f"{summary['best_threshold']:.2f} (best Youden's J)",
            f"{summary['fp_absent_at_best']:.1%}",
            f"{summary['fn_present_at_best']:.1%}",
        )
        console.print(table)
        console.print(
            f"{name}: ROC AUC {summary['auroc']:.3f} over {summary['frames_present']} present "
            f"and {summary['frames_absent']} absent object-frames; mean probability "
            f"{summary['mean_prob_absent']:.2f} absent, {summary['mean_prob_present']:.2f} present",
            soft_wrap=True,  # one line each, as in a log
        )
    if "frame_score" in found:
        frame = found["frame_score"]
        auroc = "no ROC AUC" if frame["auroc"] is None else f"ROC AUC {frame['auroc']:.3f}"
        line = (
            f"MoSAM's frame head: {auroc} for good memories (IoU >= {GOOD_MEMORY_IOU}) over "
            f"{frame['frames_good']} good and {frame['frames_bad']} bad frames"
        )
        if "left_out" in frame:
            line += (
                f"; below min_confidence {frame['min_confidence']}: {frame['left_out']:.1%} of "
                f"frames left out, {frame['bad_among_left_out']:.1%} of them bad, "
                f"{frame['bad_among_kept']:.1%} of the kept bad"
            )
        console.print(line, soft_wrap=True)
    print(json.dumps(found))


if __name__ == "__main__":
    main()
