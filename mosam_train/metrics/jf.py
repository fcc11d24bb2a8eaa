"""J&F exactly as DAVIS 2017 defines it: the one implementation the project scores with.

Region similarity J (Jaccard) and boundary accuracy F (boundary F-measure) per object and
frame, the per-object statistics (mean, recall, decay) and the per-object aggregation
across sequences. Plain numpy + cv2, no torch, so it runs anywhere.

Checked against the official ``davisvideochallenge/davis2017-evaluation`` code
(``davis2017/metrics.py``, ``utils.py``, ``evaluation.py``, ``davis.py``):

- ``jaccard`` == ``db_eval_iou`` and ``boundary_f`` == ``f_measure`` (same ``seg2bmap``
  edge rules, same disk radius ``ceil(0.008 * diag)``, same ``cv2.dilate``, same
  empty-boundary rules), including how a ``void`` mask is applied.
- ``frame_statistics`` == ``db_statistics`` except that the decay bin indices are int64:
  the official code casts them to uint8, which wraps past 256 scored frames and gives
  wrong (or NaN) decays on long videos.
- Void: the official *pipeline* maps label 255 to background while reading the GT and then
  builds its void mask as ``bool_gt == 255``, which is always empty. So official DAVIS 2017
  numbers treat void pixels as plain background (a prediction there is a false positive).
  To reproduce them pass ``void=None`` (``score_record`` does by default). Passing a void
  mask removes those pixels from both masks, as ``db_eval_iou``/``f_measure`` do.
- Aggregation is per object pooled across sequences, as ``evaluation.py`` does; values are
  reported x100 like the official CSV.
- The official tool exits with status 0 and no CSV on bad input; here bad input raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from mosam_train.data.video import VideoRecord

__all__ = [
    "ObjectScore",
    "aggregate",
    "boundary_f",
    "boundary_radius",
    "davis_scored_frames",
    "evaluate_frame",
    "evaluate_video",
    "frame_statistics",
    "jaccard",
    "score_record",
    "score_video",
    "seg2bmap",
]

DEFAULT_BOUND_TH = 0.008


# --------------------------------------------------------------------------- per frame


def _as_mask(x: np.ndarray, name: str, ndim: int) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {a.shape}")
    return a if a.dtype == bool else a.astype(bool)


def _check_pair(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None, ndim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    pred = _as_mask(pred, "pred", ndim)
    gt = _as_mask(gt, "gt", ndim)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} shapes differ")
    if void is not None:
        void = _as_mask(void, "void", 2)
        if void.shape != gt.shape[-2:]:
            raise ValueError(f"void {void.shape} does not match mask size {gt.shape[-2:]}")
    return pred, gt, void


def _jaccard_batch(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None) -> np.ndarray:
    """J for [O,H,W] masks of one frame, vectorised over objects."""
    if void is not None:
        keep = ~void
        pred = pred & keep
        gt = gt & keep
    n = pred.shape[0]
    inter = np.count_nonzero((pred & gt).reshape(n, -1), axis=1)
    union = np.count_nonzero((pred | gt).reshape(n, -1), axis=1)
    out = np.ones(n, dtype=np.float64)  # both empty -> 1
    nz = union > 0
    out[nz] = inter[nz] / union[nz]
    return out


def jaccard(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """Region similarity |P∩G|/|P∪G| of two bool [H,W] masks; 1 when both are empty.

    Void pixels (bool [H,W]) are removed from both masks before counting.
    """
    pred, gt, void = _check_pair(pred, gt, void, 2)
    return float(_jaccard_batch(pred[None], gt[None], void)[0])


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary map of a bool [H,W] mask, exactly as DAVIS ``_seg2bmap``.

    b = (M^E) | (M^S) | (M^SE); the last row uses only M^E, the last column only M^S and
    b[-1,-1] = 0, so a mask touching the image edge has no boundary along that edge and a
    full-frame mask has none at all.
    """
    m = _as_mask(mask, "mask", 2)
    b = np.zeros_like(m)
    c = m[:-1, :-1]
    b[:-1, :-1] = (c ^ m[:-1, 1:]) | (c ^ m[1:, :-1]) | (c ^ m[1:, 1:])
    b[-1, :-1] = m[-1, :-1] ^ m[-1, 1:]
    b[:-1, -1] = m[:-1, -1] ^ m[1:, -1]
    b[-1, -1] = False
    return b


def boundary_radius(height: int, width: int, bound_th: float = DEFAULT_BOUND_TH) -> int:
    """Dilation radius in pixels: ceil(bound_th * diagonal), or bound_th itself if >= 1."""
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"bound_th >= 1 is a pixel radius and must be whole, got {bound_th}")
        return int(bound_th)
    if bound_th <= 0:
        raise ValueError(f"bound_th must be > 0, got {bound_th}")
    return math.ceil(bound_th * math.hypot(height, width))


@lru_cache(maxsize=32)
def _disk(radius: int) -> np.ndarray:
    """Disk structuring element: all (y, x) with y^2 + x^2 <= r^2 (as skimage ``disk``)."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    k = ((yy * yy + xx * xx) <= radius * radius).astype(np.uint8)
    k.setflags(write=False)
    return k


def _dilate(b: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.dilate(np.ascontiguousarray(b, dtype=np.uint8), kernel).astype(bool, copy=False)


def _boundary_f_bmaps(bp: np.ndarray, bg: np.ndarray, radius: int) -> float:
    """F from two boundary maps, with the DAVIS empty-boundary rules."""
    n_p = int(np.count_nonzero(bp))
    n_g = int(np.count_nonzero(bg))
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    # Every pixel we test and every pixel that can reach it lies in the boxes bounding the
    # boundaries, and cv2's default dilation border adds nothing: cropping is exact.
    rows = np.flatnonzero((bp | bg).any(axis=1))
    cols = np.flatnonzero((bp | bg).any(axis=0))
    ys = slice(rows[0], rows[-1] + 1)
    xs = slice(cols[0], cols[-1] + 1)
    bp, bg = bp[ys, xs], bg[ys, xs]
    kernel = _disk(radius)
    precision = np.count_nonzero(_dilate(bg, kernel)[bp]) / n_p
    recall = np.count_nonzero(_dilate(bp, kernel)[bg]) / n_g
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def boundary_f(
    pred: np.ndarray,
    gt: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = DEFAULT_BOUND_TH,
) -> float:
    """Boundary F-measure of two bool [H,W] masks (DAVIS ``f_measure``).

    Both boundaries empty -> 1, exactly one empty -> 0, precision + recall == 0 -> 0.
    Void pixels (bool [H,W]) are removed from both masks before taking boundaries.
    """
    pred, gt, void = _check_pair(pred, gt, void, 2)
    if void is not None:
        pred = pred & ~void
        gt = gt & ~void
    r = boundary_radius(*gt.shape, bound_th)
    return _boundary_f_bmaps(seg2bmap(pred), seg2bmap(gt), r)


def evaluate_frame(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = DEFAULT_BOUND_TH,
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every object of one frame: bool [O,H,W] masks -> (J [O], F [O])."""
    pred, gt, void = _check_pair(pred, gt, void, 3)
    j = _jaccard_batch(pred, gt, void)
    if void is not None:
        keep = ~void
        pred = pred & keep
        gt = gt & keep
    r = boundary_radius(*gt.shape[-2:], bound_th)
    f = np.array(
        [_boundary_f_bmaps(seg2bmap(p), seg2bmap(g), r) for p, g in zip(pred, gt, strict=True)],
        dtype=np.float64,
    )
    return j, f


# --------------------------------------------------------------------------- per video


def davis_scored_frames(num_frames: int) -> np.ndarray:
    """Frames the semi-supervised protocol scores: all but the first and the last."""
    if num_frames < 3:
        raise ValueError(
            f"need at least 3 frames to score (first and last are skipped), got {num_frames}"
        )
    return np.arange(1, num_frames - 1, dtype=np.int64)


def _scored_indices(scored: np.ndarray | Sequence[int], num_frames: int) -> np.ndarray:
    s = np.asarray(scored)
    if s.dtype == bool:
        if s.shape != (num_frames,):
            raise ValueError(f"bool `scored` must have shape ({num_frames},), got {s.shape}")
        idx = np.flatnonzero(s)
    else:
        idx = s.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= num_frames):
            raise ValueError(f"scored frame indices must lie in [0, {num_frames}), got {idx}")
        if np.unique(idx).size != idx.size:
            raise ValueError("scored frame indices must be unique")
        idx = np.sort(idx)
    if idx.size == 0:
        raise ValueError("no frame to score")
    return idx


def evaluate_video(
    gt_masks: np.ndarray,
    pred_masks: np.ndarray,
    scored: np.ndarray | Sequence[int],
    void: np.ndarray | None = None,
    bound_th: float = DEFAULT_BOUND_TH,
) -> tuple[np.ndarray, np.ndarray]:
    """J and F per object and scored frame of one sequence.

    gt_masks, pred_masks: bool [T,O,H,W]; scored: bool [T] or frame indices (sorted here;
    use ``davis_scored_frames(T)`` for the semi-supervised protocol); void: bool [T,H,W]
    or None. Returns (J, F), each float64 [O, S] with S scored frames in time order.
    """
    gt_masks = _as_mask(gt_masks, "gt_masks", 4)
    pred_masks = _as_mask(pred_masks, "pred_masks", 4)
    if gt_masks.shape != pred_masks.shape:
        raise ValueError(f"gt_masks {gt_masks.shape} and pred_masks {pred_masks.shape} differ")
    t, o = gt_masks.shape[:2]
    if void is not None:
        void = _as_mask(void, "void", 3)
        if void.shape != (t, *gt_masks.shape[2:]):
            raise ValueError(f"void {void.shape} must be [T,H,W] = {(t, *gt_masks.shape[2:])}")
    idx = _scored_indices(scored, t)
    j = np.empty((o, idx.size), dtype=np.float64)
    f = np.empty((o, idx.size), dtype=np.float64)
    for k, ti in enumerate(idx):
        v = None if void is None else void[ti]
        j[:, k], f[:, k] = evaluate_frame(gt_masks[ti], pred_masks[ti], v, bound_th)
    return j, f


def frame_statistics(values: np.ndarray | Sequence[float]) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame J or F, as DAVIS ``db_statistics``.

    recall = fraction of frames with value > 0.5; decay = mean of the first of 4 temporal
    bins minus mean of the last, with the official bin edges but int64 indices (the
    official uint8 cast overflows past 256 frames).
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("no per-frame values")
    mean = float(np.nanmean(x))
    recall = float(np.nanmean(x > 0.5))
    n_bins = 4
    ids = (np.round(np.linspace(1, len(x), n_bins + 1) + 1e-10) - 1).astype(np.int64)
    bins = [x[ids[i] : ids[i + 1] + 1] for i in range(n_bins)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[-1]))
    return mean, recall, decay


@dataclass(frozen=True)
class ObjectScore:
    """One (video, object) result, raw 0-1 values; the unit ``aggregate`` pools over."""

    video: str
    object_id: int
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float
    num_frames: int
    tags: tuple[str, ...] = ()


def _object_scores(
    video: str,
    object_ids: Sequence[int],
    j: np.ndarray,
    f: np.ndarray,
    tags: Iterable[str],
) -> list[ObjectScore]:
    tags = tuple(tags)
    rows = []
    for k, oid in enumerate(object_ids):
        jm, jr, jd = frame_statistics(j[k])
        fm, fr, fd = frame_statistics(f[k])
        rows.append(ObjectScore(video, int(oid), jm, jr, jd, fm, fr, fd, int(j.shape[1]), tags))
    return rows


def score_video(
    video: str,
    gt_masks: np.ndarray,
    pred_masks: np.ndarray,
    scored: np.ndarray | Sequence[int] | None = None,
    void: np.ndarray | None = None,
    object_ids: Sequence[int] | None = None,
    tags: Iterable[str] = (),
    bound_th: float = DEFAULT_BOUND_TH,
) -> list[ObjectScore]:
    """``evaluate_video`` + ``frame_statistics`` -> one ``ObjectScore`` per object.

    scored defaults to ``davis_scored_frames(T)``; object_ids default to 1..O.
    """
    t, o = np.shape(gt_masks)[:2]
    if scored is None:
        scored = davis_scored_frames(t)
    ids = list(range(1, o + 1)) if object_ids is None else list(object_ids)
    if len(ids) != o:
        raise ValueError(f"{video}: {len(ids)} object ids for {o} objects")
    j, f = evaluate_video(gt_masks, pred_masks, scored, void, bound_th)
    return _object_scores(video, ids, j, f, tags)


def score_record(
    record: VideoRecord,
    predict_masks: Callable[[int], np.ndarray] | Mapping[int, np.ndarray],
    use_void: bool = False,
    bound_th: float = DEFAULT_BOUND_TH,
) -> list[ObjectScore]:
    """Score a ``VideoRecord``'s annotated frames, skipping the first and last one.

    predict_masks maps a frame index to bool [O,H,W] in ``record.object_ids`` order
    (a dict or a callable). Every object is scored on every scored frame (DAVIS / SA-V
    val protocol where all objects are given on the first frame). Frames are read one at
    a time, so long videos never sit in memory. ``use_void=False`` reproduces official
    DAVIS numbers (void = background); True removes ``record.load_void(t)`` pixels.
    """
    frames = sorted(record.annotated_frames)
    if len(frames) < 3:
        raise ValueError(
            f"{record.name}: {len(frames)} annotated frames; scoring skips the first and "
            "last, so at least 3 are needed"
        )
    scored = frames[1:-1]
    o = len(record.object_ids)
    j = np.empty((o, len(scored)), dtype=np.float64)
    f = np.empty((o, len(scored)), dtype=np.float64)
    for k, t in enumerate(scored):
        gt = record.load_masks(t)
        if isinstance(predict_masks, Mapping):
            if t not in predict_masks:
                raise KeyError(f"{record.name}: no prediction for frame {t}")
            pred = predict_masks[t]
        else:
            pred = predict_masks(t)
        pred = np.asarray(pred)
        if pred.shape != gt.shape:
            raise ValueError(
                f"{record.name} frame {t}: prediction shape {pred.shape} != GT {gt.shape} "
                f"([O,H,W] in object_ids order {tuple(record.object_ids)})"
            )
        void = record.load_void(t) if use_void else None
        j[:, k], f[:, k] = evaluate_frame(gt, pred, void, bound_th)
    return _object_scores(record.name, record.object_ids, j, f, getattr(record, "tags", ()))


# --------------------------------------------------------------------------- aggregate


def _pool(rows: Sequence[ObjectScore]) -> dict[str, float]:
    if not rows:
        nan = float("nan")
        return {"J": nan, "F": nan, "JF": nan}
    j = 100.0 * float(np.mean([r.j_mean for r in rows]))
    f = 100.0 * float(np.mean([r.f_mean for r in rows]))
    return {"J": j, "F": f, "JF": (j + f) / 2}


def aggregate(rows: Iterable[ObjectScore]) -> dict[str, float | int]:
    """Pool ``ObjectScore`` rows per object across sequences; values x100.

    Keys: J, F, JF (= (J+F)/2), J_recall, J_decay, F_recall, F_decay, num_videos,
    num_objects, and for every tag seen ``tag/<tag>/{J,F,JF,num_objects}`` (an object
    carries its video's tags). No rows gives NaN scores and zero counts. A repeated
    (video, object_id) pair is an error: it would silently weight that object twice.
    """
    rows = list(rows)
    keys = [(r.video, r.object_id) for r in rows]
    if len(set(keys)) != len(keys):
        seen: set[tuple[str, int]] = set()
        dup = next(k for k in keys if k in seen or seen.add(k))
        raise ValueError(f"duplicate score row for video {dup[0]!r} object {dup[1]}")
    out: dict[str, float | int] = dict(_pool(rows))
    for name, field in (
        ("J_recall", "j_recall"),
        ("J_decay", "j_decay"),
        ("F_recall", "f_recall"),
        ("F_decay", "f_decay"),
    ):
        vals = [getattr(r, field) for r in rows]
        out[name] = 100.0 * float(np.mean(vals)) if vals else float("nan")
    out["num_videos"] = len({r.video for r in rows})
    out["num_objects"] = len(rows)
    for tag in sorted({t for r in rows for t in r.tags}):
        sub = [r for r in rows if tag in r.tags]
        for key, val in _pool(sub).items():
            out[f"tag/{tag}/{key}"] = val
        out[f"tag/{tag}/num_objects"] = len(sub)
    return out
