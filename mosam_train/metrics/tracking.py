"""Box tracking scores as the LaSOT and GOT-10k toolkits compute them.

Boxes are ``x, y, w, h`` in pixels, pixel-inclusive as the toolkits read them: a box covers
the pixel columns ``x .. x + w - 1``. A frame with no predicted box is written (and scored)
as ``0,0,0,0``.

LaSOT (one-pass evaluation). Reference: the official MATLAB toolkit
(github.com/HengLan/LaSOT_Evaluation_Toolkit, ``utils/calc_seq_err_robust.m`` and
``utils/eval_tracker.m``) and its Python reproduction in pytracking
(``pytracking/analysis/extract_results.py::calc_seq_err_robust`` and ``extract_results``,
which sets ``seq_length = anno_bb.shape[0]`` for LaSOT to match the MATLAB numbers):

- a predicted box that is invalid (NaN, ``w <= 0`` or ``h <= 0``; so also "no box") is
  replaced by the previous frame's prediction, as read from the file, before anything else;
- the first frame's prediction is replaced by the ground truth (it is the initialisation);
- frames where the target is absent (``full_occlusion.txt`` or ``out_of_view.txt`` is 1;
  pytracking's ``target_visible``; the MATLAB toolkit ships the same flags as
  ``annos/absent/<seq>.txt``) and frames whose ground-truth box has no area cannot succeed:
  IoU -1, centre error +inf. They are not removed from the frame count: each sequence's
  curve divides by all its frames (MATLAB ``len_all = size(anno, 1)``), so a perfect
  tracker scores ``visible / frames * 20/21`` on a sequence with absent frames;
- IoU: ``inter / (area_a + area_b - inter)`` with the intersection
  ``max(0, min(x_a + w_a - 1, x_b + w_b - 1) - max(x_a, x_b) + 1)`` per axis
  (``calc_rect_int.m``), i.e. the continuous IoU of ``[x, x + w)`` boxes;
- centre ``x + (w - 1) / 2``; the normalised centre error divides both centres by the
  ground-truth ``w, h`` before the distance (MATLAB ``norm_dst = true``);
- success curve: fraction of frames with IoU **>** t for t = 0:0.05:1 (21 thresholds);
  success score (AUC) = mean of the curve (a perfect tracker: 20/21 = 0.952, since no
  IoU exceeds 1); precision curve: fraction with centre error **<=** t for t = 0..50 px,
  precision = the value at 20 px; normalised precision curve: t = 0:0.01:0.5,
  normalised precision = the value at 0.20 (the MATLAB toolkit ranks error plots at
  ``rank_idx = 21``, pytracking reports ``curve[20]``; `norm_precision_auc`, the mean of
  the curve, is the got10k-toolkit ``ExperimentLaSOT`` figure);
- dataset figures: curves averaged over sequences (every sequence weighs the same), then
  the scores above are taken from the mean curves.

One deviation: a *visible* frame whose ground-truth box has no area gets a +inf
normalised centre error here; pytracking gives it -1 (a success at every threshold) and
MATLAB -1 for both centre errors. LaSOT has no such frames (its zero boxes are absent
frames), so the numbers agree on the real benchmark.

GOT-10k (``got10k/experiments/got10k.py::ExperimentGOT10k.report`` and
``got10k/utils/metrics.py::rect_iou``, github.com/got-10k/toolkit):

- the first frame is not scored (``boxes[1:]`` against ``anno[1:]``);
- only frames with ``cover.label > 0`` (target at least partly visible) are scored;
  ``absence.label`` is not read by the toolkit;
- both boxes are first clipped to the image (``bound`` = the image's width, height; the
  toolkit clips x into ``[0, W]`` and then w into ``[0, W - x]``, keeping w otherwise);
  IoU = ``inter / (union + eps)``, clipped to [0, 1]: a ``0,0,0,0`` box scores 0;
- AO = mean IoU and SR_t = fraction with IoU **>** t, over the scored frames of all
  sequences pooled (frames, not sequences, weigh the same); success curve over
  ``linspace(0, 1, 101)``.

The functions return fractions (0-1); reports (CSV, metrics.json) give percentages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

Box = tuple[float, float, float, float]

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)  # MATLAB 0:0.05:1
PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64)  # pixels, MATLAB 0:50
NORM_PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64) / 100.0  # (0:50) / 100
PRECISION_INDEX = 20  # 20 px; 0.20 for the normalised curve
GOT10K_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # ExperimentGOT10k.nbins_iou
_EPS = np.finfo(float).eps


def boxes_array(boxes: Iterable[Sequence[float] | None]) -> np.ndarray:
    """float [N, 4] of `boxes`; a missing box (None) becomes ``0, 0, 0, 0``, the row a
    submission file holds for it."""
    rows = [(0.0, 0.0, 0.0, 0.0) if b is None else tuple(float(v) for v in b) for b in boxes]
    out = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of paired ``x, y, w, h`` boxes [N, 4] (continuous ``[x, x + w)`` boxes, equal to
    the toolkits' pixel-inclusive form); boxes without area give 0."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def center_error(pred: np.ndarray, gt: np.ndarray, normalized: bool = False) -> np.ndarray:
    """Distance between box centres ``x + (w - 1) / 2``; `normalized` divides both centres
    by the ground-truth ``w, h`` first (LaSOT's normalised precision)."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    cp = pred[:, :2] + (pred[:, 2:] - 1.0) / 2.0
    cg = gt[:, :2] + (gt[:, 2:] - 1.0) / 2.0
    if normalized:
        with np.errstate(divide="ignore", invalid="ignore"):
            cp = cp / gt[:, 2:]
            cg = cg / gt[:, 2:]
    return np.sqrt(((cp - cg) ** 2).sum(axis=1))


# ------------------------------------------------------------------------------ LaSOT


@dataclass
class LaSOTScore:
    """One sequence's LaSOT curves (fractions of all its frames)."""

    name: str
    num_frames: int
    num_scored: int  # visible frames with a valid ground-truth box
    success_curve: np.ndarray  # [21]
    precision_curve: np.ndarray  # [51]
    norm_precision_curve: np.ndarray  # [51]
    mean_iou: float  # over the scored frames (pytracking's avg_overlap)

    @property
    def success_auc(self) -> float:
        return float(self.success_curve.mean())

    @property
    def precision(self) -> float:
        return float(self.precision_curve[PRECISION_INDEX])

    @property
    def norm_precision(self) -> float:
        return float(self.norm_precision_curve[PRECISION_INDEX])


def lasot_frame_errors(
    pred: np.ndarray, gt: np.ndarray, absent: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame (IoU, centre error, normalised centre error, scored) of one sequence after
    the toolkit's clean-up (see the module docstring); unscored frames hold -1 / inf / inf."""
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    pred = np.array(pred, dtype=np.float64).reshape(-1, 4)
    n = len(gt)
    if len(pred) < n:
        raise ValueError(f"{len(pred)} predicted boxes for {n} ground-truth frames")
    pred = pred[:n]  # longer results are cut (MATLAB: monkey-17)
    for i in range(1, n):  # in order: a run of missing boxes repeats the last real one
        r = pred[i]
        if (np.isnan(r).any() or r[2] <= 0 or r[3] <= 0) and not np.isnan(gt[i]).any():
            pred[i] = pred[i - 1]
    pred[0] = gt[0]
    absent = np.zeros(n, bool) if absent is None else np.asarray(absent, bool).reshape(-1)
    if len(absent) != n:
        raise ValueError(f"{len(absent)} absent flags for {n} ground-truth frames")
    scored = ~absent & ~np.isnan(gt).any(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    iou = np.full(n, -1.0)
    ce = np.full(n, np.inf)
    nce = np.full(n, np.inf)
    iou[scored] = box_iou(pred[scored], gt[scored])
    ce[scored] = center_error(pred[scored], gt[scored])
    nce[scored] = center_error(pred[scored], gt[scored], normalized=True)
    return iou, ce, nce, scored


def score_lasot_sequence(
    pred: np.ndarray, gt: np.ndarray, absent: np.ndarray | None = None, name: str = ""
) -> LaSOTScore:
    """LaSOT curves of one sequence: `pred` and `gt` are [N, 4] ``x, y, w, h`` (a missing
    prediction is ``0,0,0,0`` or NaN), `absent` bool [N] (full occlusion or out of view)."""
    iou, ce, nce, scored = lasot_frame_errors(pred, gt, absent)
    n = len(iou)
    return LaSOTScore(
        name=name,
        num_frames=n,
        num_scored=int(scored.sum()),
        success_curve=(iou[:, None] > SUCCESS_THRESHOLDS[None]).sum(0) / n,
        precision_curve=(ce[:, None] <= PRECISION_THRESHOLDS[None]).sum(0) / n,
        norm_precision_curve=(nce[:, None] <= NORM_PRECISION_THRESHOLDS[None]).sum(0) / n,
        mean_iou=float(iou[scored].mean()) if scored.any() else float("nan"),
    )


def aggregate_lasot(scores: Sequence[LaSOTScore]) -> dict:
    """Dataset LaSOT figures (fractions): curves averaged over sequences, and the scores
    read off the mean curves."""
    if not scores:
        raise ValueError("no sequences to aggregate")
    succ = np.mean([s.success_curve for s in scores], axis=0)
    prec = np.mean([s.precision_curve for s in scores], axis=0)
    norm = np.mean([s.norm_precision_curve for s in scores], axis=0)
    ious = [s.mean_iou for s in scores if not np.isnan(s.mean_iou)]
    return {
        "success_auc": float(succ.mean()),
        "precision": float(prec[PRECISION_INDEX]),
        "norm_precision": float(norm[PRECISION_INDEX]),
        "norm_precision_auc": float(norm.mean()),
        "success_rate_50": float(succ[10]),  # IoU > 0.5
        "mean_iou": float(np.mean(ious)) if ious else float("nan"),
        "num_sequences": len(scores),
        "num_frames": int(sum(s.num_frames for s in scores)),
        "num_scored_frames": int(sum(s.num_scored for s in scores)),
        "success_curve": succ.tolist(),
        "precision_curve": prec.tolist(),
        "norm_precision_curve": norm.tolist(),
    }


# ---------------------------------------------------------------------------- GOT-10k


def got10k_iou(a: np.ndarray, b: np.ndarray, bound: tuple[float, float] | None) -> np.ndarray:
    """`got10k.utils.metrics.rect_iou`: both boxes clipped to ``bound`` = (width, height)
    first (x into [0, W], then w into [0, W - x]; likewise y, h), IoU with eps, in [0, 1]."""
    a = np.array(a, dtype=np.float64).reshape(-1, 4)
    b = np.array(b, dtype=np.float64).reshape(-1, 4)
    if bound is not None:
        for r in (a, b):
            r[:, 0] = np.clip(r[:, 0], 0, bound[0])
            r[:, 1] = np.clip(r[:, 1], 0, bound[1])
            r[:, 2] = np.clip(r[:, 2], 0, bound[0] - r[:, 0])
            r[:, 3] = np.clip(r[:, 3], 0, bound[1] - r[:, 1])
    iw = np.maximum(
        np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0
    )
    ih = np.maximum(
        np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0
    )
    inter = iw * ih
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.clip(inter / (union + _EPS), 0.0, 1.0)


@dataclass
class GOT10kScore:
    """One sequence's scored IoUs (frames 2.. with cover > 0)."""

    name: str
    num_frames: int
    ious: np.ndarray

    @property
    def ao(self) -> float:
        return float(self.ious.mean()) if len(self.ious) else float("nan")

    def sr(self, threshold: float) -> float:
        return float((self.ious > threshold).mean()) if len(self.ious) else float("nan")


def score_got10k_sequence(
    pred: np.ndarray,
    gt: np.ndarray,
    cover: np.ndarray | None,
    bound: tuple[float, float] | None,
    name: str = "",
) -> GOT10kScore:
    """GOT-10k IoUs of one sequence: `pred`, `gt` [N, 4]; `cover` int [N] from cover.label
    (None: every frame visible); `bound` = (image width, image height)."""
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    pred = np.nan_to_num(np.asarray(pred, dtype=np.float64).reshape(-1, 4), nan=0.0)
    if pred.shape != gt.shape:
        raise ValueError(f"{len(pred)} predicted boxes for {len(gt)} ground-truth frames")
    ious = got10k_iou(pred[1:], gt[1:], bound)
    if cover is not None:
        cover = np.asarray(cover).reshape(-1)
        if len(cover) != len(gt):
            raise ValueError(f"{len(cover)} cover labels for {len(gt)} ground-truth frames")
        ious = ious[cover[1:] > 0]
    return GOT10kScore(name=name, num_frames=len(gt), ious=ious)


def aggregate_got10k(scores: Sequence[GOT10kScore]) -> dict:
    """Dataset GOT-10k figures (fractions) over the pooled frames of all sequences."""
    if not scores:
        raise ValueError("no sequences to aggregate")
    ious = np.concatenate([s.ious for s in scores])
    if not len(ious):
        raise ValueError("no scored frames (every frame after the first has cover 0)")
    curve = (ious[:, None] > GOT10K_THRESHOLDS[None]).mean(0)
    return {
        "ao": float(ious.mean()),
        "sr50": float((ious > 0.5).mean()),
        "sr75": float((ious > 0.75).mean()),
        "num_sequences": len(scores),
        "num_frames": int(sum(s.num_frames for s in scores)),
        "num_scored_frames": len(ious),
        "success_curve": curve.tolist(),
    }


# ------------------------------------------------------------------------------ plots


def _curve_plot(
    x: np.ndarray,
    y: Sequence[float],
    label: str,
    path: str | Path,
    xlabel: str,
    ylabel: str,
    title: str,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.0, 4.0))
    ax.plot(x, y, lw=2, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(float(x[0]), float(x[-1])), ylim=(0, 1.02))
    ax.set_title(title)
    ax.grid(True, alpha=0.4)
    ax.legend(loc="lower left" if "Success" in title else "lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lasot(result: dict, out_dir: str | Path, name: str, title: str) -> list[Path]:
    """Success, precision and normalised precision plots (as the LaSOT toolkit draws them:
    score in the legend) from `aggregate_lasot`'s result."""
    out_dir = Path(out_dir)
    return [
        _curve_plot(
            SUCCESS_THRESHOLDS, result["success_curve"],
            f"{name} [AUC {result['success_auc']:.3f}]", out_dir / "success_plot.png",
            "Overlap threshold", "Success rate", f"Success plot: {title}",
        ),
        _curve_plot(
            PRECISION_THRESHOLDS, result["precision_curve"],
            f"{name} [{result['precision']:.3f} at 20 px]", out_dir / "precision_plot.png",
            "Location error threshold (px)", "Precision", f"Precision plot: {title}",
        ),
        _curve_plot(
            NORM_PRECISION_THRESHOLDS, result["norm_precision_curve"],
            f"{name} [{result['norm_precision']:.3f} at 0.20]",
            out_dir / "norm_precision_plot.png", "Normalized location error threshold",
            "Normalized precision", f"Normalized precision plot: {title}",
        ),
    ]  # fmt: skip


def plot_got10k(result: dict, out_dir: str | Path, name: str, title: str) -> list[Path]:
    """GOT-10k's success plot (101 thresholds, AO in the legend)."""
    return [
        _curve_plot(
            GOT10K_THRESHOLDS, result["success_curve"], f"{name} [AO {result['ao']:.3f}]",
            Path(out_dir) / "success_plot.png", "Overlap threshold", "Success rate",
            f"Success plot: {title}",
        )
    ]  # fmt: skip


def benchmark_report(
    benchmark: str,
    sequences: Sequence,
    preds: dict[str, np.ndarray],
    plots_dir: str | Path,
    name: str,
    title: str,
) -> dict:
    """The figures `eval.py task=tracking` reports for `benchmark` (lasot | got10k) over
    `sequences` (with ground truth; `preds` by sequence name): the headline `score` and
    the other figures in percent, frame counts, curves, thresholds and the plots drawn."""
    if benchmark == "lasot":
        agg = aggregate_lasot(
            [score_lasot_sequence(preds[s.name], s.gt, s.absent, s.name) for s in sequences]
        )
        plots = plot_lasot(agg, plots_dir, name, title)
        keys = ("success_auc", "precision", "norm_precision", "norm_precision_auc",
                "success_rate_50", "mean_iou")  # fmt: skip
        headline = "success_auc"
        thresholds = {
            "success": SUCCESS_THRESHOLDS.tolist(),
            "precision": PRECISION_THRESHOLDS.tolist(),
            "norm_precision": NORM_PRECISION_THRESHOLDS.tolist(),
        }
    else:
        agg = aggregate_got10k(
            [
                score_got10k_sequence(preds[s.name], s.gt, s.cover, (s.width, s.height), s.name)
                for s in sequences
            ]
        )
        plots = plot_got10k(agg, plots_dir, name, title)
        keys = ("ao", "sr50", "sr75")
        headline = "ao"
        thresholds = {"success": GOT10K_THRESHOLDS.tolist()}
    figures = {k: 100 * agg[k] for k in keys}
    return {
        "figures": {**figures, "score": figures[headline]},
        "counts": {k: agg[k] for k in ("num_sequences", "num_frames", "num_scored_frames")},
        "curves": {k: v for k, v in agg.items() if k.endswith("_curve")},
        "thresholds": thresholds,
        "plots": plots,
    }
