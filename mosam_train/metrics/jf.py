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

Which frames each object is scored on is a `Protocol` (J and F themselves never change);
each dataset format names the one its videos are scored with (`default_protocol`):

- ``DAVIS``: every object on every annotated frame but the video's first and last
  (``davis2017/evaluation.py``: ``all_gt_masks[:, 1:-1]``; objects = first-frame labels).
- ``SAV``: SA-V val/test as ``facebookresearch/sam2`` ``sav_dataset/utils/sav_benchmark.py``
  scores them: the annotated frames (every 4th) minus the first and last; an object counts
  from the first of those frames where its GT *or* its prediction is non-empty
  (``Evaluator.feed_frame`` only scores objects already seen in either), and an object whose
  GT is empty on all of them is left out (``conclude`` reports ``objects_in_gt`` only; in
  the SA-V folder layout the script then stops on an assertion). Objects are scored from
  their own masks, so overlaps are allowed.
- ``APPEARANCE`` (default for every dataset format but SA-V): DAVIS's rule per object, for
  objects that appear mid-video (YouTube-VOS, LVOS): each object is scored on
  the annotated frames strictly after its first appearance (where the GT is the prompt,
  as DAVIS's first frame is) and before the video's last annotated frame. When every object
  is in the first frame this is exactly ``DAVIS``. YouTube-VOS and MOSE validation are
  scored by their servers, whose code is not public, so this rule cannot be checked
  against them.
- ``LVOS``: as ``LingyiHongfd/lvos-evaluation`` (``lvos/evaluation.py``,
  ``_evaluate_semisupervised``): each object from its meta ``start`` frame *included* (the
  prompt frame) to its meta ``end`` *excluded* (``range(start, end, 5)``), no first/last
  skipping. Pass the meta ends as ``stop`` for exact parity; without them an object is
  scored to the end of the video. (That toolkit also treats void as background, computes
  decay with the same uint8 bin indices, wrong past 256 frames, and pre-fills meta
  ``frame_nums`` values with zeros, which count as J = F = 0 if the range is shorter; the
  last two are not copied.)

Diagnostics (not DAVIS's; read from the same per-frame J and mask emptiness, so they cost
almost nothing): per object, on its scored frames, ``j_visible`` (mean J where its GT is
non-empty), ``fp_absent`` (share of the frames where its GT is empty that have a non-empty
prediction) and its re-emergences (a scored frame with GT after one without): each is
re-detected after ``latency`` scored frames (0: on the re-emergence frame itself), the first
frame with IoU > 0.5 before the object vanishes again, within ``LATENCY_CAP`` frames; an
event with none is never re-detected. ``aggregate`` pools them per object (as J) and per
event, with bootstrap intervals over objects (``bootstrap_interval``).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np

__all__ = [
    "APPEARANCE",
    "DAVIS",
    "INTERVAL_KEYS",
    "LATENCY_CAP",
    "LOGGED_KEYS",
    "LOGGED_TAG_KEYS",
    "LVOS",
    "PROTOCOLS",
    "ROW_FIELDS",
    "SAV",
    "ObjectScore",
    "Protocol",
    "ScoredVideo",
    "aggregate",
    "bootstrap_interval",
    "boundary_f",
    "boundary_radius",
    "davis_scored_frames",
    "default_protocol",
    "diagnostics",
    "evaluate_frame",
    "evaluate_video",
    "frame_statistics",
    "jaccard",
    "logged_values",
    "object_frames",
    "score_record",
    "score_video",
    "seg2bmap",
]

DEFAULT_BOUND_TH = 0.008
# Re-detection latency is counted up to this many scored frames; an event not re-detected by
# then counts as never re-detected (and as this value in the mean and median latency).
LATENCY_CAP = 30
# Percentile bootstrap over objects: resamples, seed (fixed: intervals are reproducible).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


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


def _region_counts(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """J and whether GT / prediction are non-empty, for [O,H,W] masks of one frame."""
    if void is not None:
        keep = ~void
        pred = pred & keep
        gt = gt & keep
    n = pred.shape[0]
    inter = np.count_nonzero((pred & gt).reshape(n, -1), axis=1)
    n_gt = np.count_nonzero(gt.reshape(n, -1), axis=1)
    n_pred = np.count_nonzero(pred.reshape(n, -1), axis=1)
    union = n_gt + n_pred - inter
    out = np.ones(n, dtype=np.float64)  # both empty -> 1
    nz = union > 0
    out[nz] = inter[nz] / union[nz]
    return out, n_gt > 0, n_pred > 0


def _jaccard_batch(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None) -> np.ndarray:
    """J for [O,H,W] masks of one frame, vectorised over objects."""
    return _region_counts(pred, gt, void)[0]


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


def _frame_scores(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None, bound_th: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(J, F, GT non-empty, prediction non-empty), each [O], of checked [O,H,W] masks."""
    j, gt_any, pred_any = _region_counts(pred, gt, void)
    if void is not None:
        keep = ~void
        pred = pred & keep
        gt = gt & keep
    r = boundary_radius(*gt.shape[-2:], bound_th)
    # both masks empty: both boundaries are, F = 1 (no boundary maps needed)
    f = np.array(
        [
            _boundary_f_bmaps(seg2bmap(p), seg2bmap(g), r) if ga or pa else 1.0
            for p, g, ga, pa in zip(pred, gt, gt_any, pred_any, strict=True)
        ],
        dtype=np.float64,
    )
    return j, f, gt_any, pred_any


def evaluate_frame(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = DEFAULT_BOUND_TH,
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every object of one frame: bool [O,H,W] masks -> (J [O], F [O])."""
    pred, gt, void = _check_pair(pred, gt, void, 3)
    j, f, _, _ = _frame_scores(gt, pred, void, bound_th)
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


def diagnostics(
    j: Sequence[float],
    visible: Sequence[bool],
    predicted: Sequence[bool],
    cap: int = LATENCY_CAP,
) -> tuple[float, float, tuple[int, ...], int]:
    """(j_visible, fp_absent, latencies, never_redetected) of one object's scored frames
    in time order (see the module docstring): its per-frame J, whether its GT is non-empty
    and whether its prediction is. NaN where it has no visible / no absent frame;
    `latencies` of the re-detected re-emergences, `never_redetected` counts the others."""
    j = np.asarray(j, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    absent = ~visible
    j_visible = float(j[visible].mean()) if visible.any() else math.nan
    fp_absent = float(predicted[absent].mean()) if absent.any() else math.nan
    latencies: list[int] = []
    never = 0
    n = len(j)
    for start in np.flatnonzero(visible[1:] & absent[:-1]) + 1:
        stop = min(n, start + cap)
        gone = np.flatnonzero(absent[start:stop])
        if gone.size:
            stop = start + int(gone[0])
        hit = np.flatnonzero(j[start:stop] > 0.5)
        if hit.size:
            latencies.append(int(hit[0]))
        else:
            never += 1
    return j_visible, fp_absent, tuple(latencies), never


def _same(value: object) -> object:
    """NaN as None, so rows holding NaN compare (and hash) equal to their copies."""
    return None if isinstance(value, float) and math.isnan(value) else value


@dataclass(frozen=True, eq=False)
class ObjectScore:
    """One (video, object) result, raw 0-1 values; the unit ``aggregate`` pools over.

    The diagnostics (`diagnostics`) default to "not measured" (NaN, no events), which is
    what rows read back from a CSV written before they existed hold.
    """

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
    j_visible: float = math.nan
    fp_absent: float = math.nan
    latencies: tuple[int, ...] = ()
    never_redetected: int = 0

    def _key(self) -> tuple:
        return tuple(_same(getattr(self, f)) for f in ROW_FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectScore):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def num_events(self) -> int:
        """Re-emergences scored: re-detected or not."""
        return len(self.latencies) + self.never_redetected

    def to_row(self) -> dict[str, str | int | float]:
        """A CSV row (``ROW_FIELDS``; tags and latencies joined by '|'); floats round-trip
        exactly."""
        row = asdict(self)
        row["tags"] = "|".join(self.tags)
        row["latencies"] = "|".join(str(v) for v in self.latencies)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> ObjectScore:
        """Inverse of ``to_row`` for a row read back with ``csv.DictReader``; columns added
        after a file was written take their defaults."""

        def number(key: str) -> float:
            value = row.get(key)
            return math.nan if value in (None, "") else float(value)

        return cls(
            video=row["video"],
            object_id=int(row["object_id"]),
            j_mean=float(row["j_mean"]),
            j_recall=float(row["j_recall"]),
            j_decay=float(row["j_decay"]),
            f_mean=float(row["f_mean"]),
            f_recall=float(row["f_recall"]),
            f_decay=float(row["f_decay"]),
            num_frames=int(row["num_frames"]),
            tags=tuple(t for t in (row.get("tags") or "").split("|") if t),
            j_visible=number("j_visible"),
            fp_absent=number("fp_absent"),
            latencies=tuple(int(v) for v in (row.get("latencies") or "").split("|") if v),
            never_redetected=int(row.get("never_redetected") or 0),
        )


ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ObjectScore))


def _object_score(
    video: str,
    object_id: int,
    j: Sequence[float],
    f: Sequence[float],
    visible: Sequence[bool],
    predicted: Sequence[bool],
    tags: tuple[str, ...],
) -> ObjectScore:
    jm, jr, jd = frame_statistics(j)
    fm, fr, fd = frame_statistics(f)
    jv, fp, latencies, never = diagnostics(j, visible, predicted)
    return ObjectScore(
        video, int(object_id), jm, jr, jd, fm, fr, fd, len(j), tags, jv, fp, latencies, never
    )


# --------------------------------------------------------------------------- protocols

Start = Literal["video", "after_appearance", "appearance", "nonempty"]


@dataclass(frozen=True)
class Protocol:
    """Which annotated frames each object is scored on (see the module docstring).

    skip_first_last: drop the video's first and last annotated frames.
    start: where an object's scoring begins: ``video`` on every remaining frame,
    ``after_appearance`` after its first-appearance frame, ``appearance`` at it,
    ``nonempty`` at the first remaining frame where its GT or its prediction is non-empty
    (and an object whose GT is empty on all remaining frames is left out).
    """

    name: str
    skip_first_last: bool = True
    start: Start = "video"


DAVIS = Protocol("davis", skip_first_last=True, start="video")
SAV = Protocol("sav", skip_first_last=True, start="nonempty")
APPEARANCE = Protocol("appearance", skip_first_last=True, start="after_appearance")
LVOS = Protocol("lvos", skip_first_last=False, start="appearance")
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (DAVIS, SAV, APPEARANCE, LVOS)}


def _protocol(protocol: Protocol | str) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown J&F protocol {protocol!r}; known: {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


# `typing.Protocol` (a structural type), not this module's scoring `Protocol`
class ScoredVideo(typing.Protocol):
    """What every scoring reads from a video. `data.video.VideoRecord` has it (and the
    optional members); the scoring CLI's PNG folders have this and the tags.

    Optional members, read only when present or asked for: `tags` (tuple of str, carried
    into the rows), `object_tags` ({object id: tags} where tags are given per object, or
    None: every object carries `tags`), `protocol` (the name of the protocol its dataset
    format scores it with, see `default_protocol`), `load_void(t)` (bool [H, W] or None,
    with ``use_void=True``) and `first_appearance()` ({object id: frame}, by the appearance
    protocols when none is passed).
    """

    name: str
    object_ids: tuple[int, ...]
    annotated_frames: tuple[int, ...]

    def load_masks(self, t: int) -> np.ndarray:
        """bool [O, H, W] of `object_ids` on annotated frame `t`."""
        ...


def default_protocol(record: ScoredVideo) -> Protocol:
    """The protocol `record.protocol` names: its dataset format's (`data.formats.read_split`
    sets it from the format's registry entry, e.g. ``sav`` for SA-V); ``APPEARANCE``
    (which is ``DAVIS`` whenever every object is in the first frame) for a record read
    otherwise."""
    return _protocol(getattr(record, "protocol", APPEARANCE.name))


def object_frames(
    annotated: Iterable[int],
    object_ids: Sequence[int],
    protocol: Protocol | str = DAVIS,
    first_appearance: Mapping[int, int] | None = None,
    stop: Mapping[int, int] | None = None,
) -> dict[int, list[int]]:
    """Frames each object may be scored on under `protocol`, in time order.

    first_appearance {object id: frame} is needed by the ``appearance`` rules (an object
    missing from it never appears and gets no frame); stop {object id: frame} ends an
    object's frames before that frame (LVOS's meta ``end``). ``nonempty`` trims further
    once predictions are known (done while scoring).
    """
    protocol = _protocol(protocol)
    frames = sorted(set(annotated))
    if protocol.skip_first_last:
        if len(frames) < 3:
            raise ValueError(
                f"{len(frames)} annotated frames; protocol {protocol.name!r} skips the first "
                "and last, so at least 3 are needed"
            )
        frames = frames[1:-1]
    appearance = protocol.start in ("appearance", "after_appearance")
    if appearance and first_appearance is None:
        raise ValueError(f"protocol {protocol.name!r} needs first_appearance")
    out: dict[int, list[int]] = {}
    for oid in object_ids:
        fs = frames
        if appearance:
            t0 = first_appearance.get(oid)
            if t0 is None:
                fs = []
            elif protocol.start == "appearance":
                fs = [t for t in fs if t >= t0]
            else:
                fs = [t for t in fs if t > t0]
        if stop is not None and oid in stop:
            fs = [t for t in fs if t < stop[oid]]
        out[int(oid)] = list(fs)
    return out


def _score_frames(
    video: str,
    object_ids: Sequence[int],
    frames: Mapping[int, Sequence[int]],
    load_gt: Callable[[int], np.ndarray],
    load_pred: Callable[[int], np.ndarray],
    load_void: Callable[[int], np.ndarray | None],
    nonempty: bool,
    bound_th: float,
    tags: Mapping[int, tuple[str, ...]],
) -> list[ObjectScore]:
    """The scoring loop every entry point uses: each frame is read once, and J/F computed
    for the objects that frame is scored for, with the emptiness the diagnostics read.
    Objects without a scored frame get no row."""
    ids = [int(o) for o in object_ids]
    wanted = {oid: set(frames.get(oid, ())) for oid in ids}
    j: dict[int, list[float]] = {oid: [] for oid in ids}
    f: dict[int, list[float]] = {oid: [] for oid in ids}
    visible: dict[int, list[bool]] = {oid: [] for oid in ids}
    predicted: dict[int, list[bool]] = {oid: [] for oid in ids}
    started = dict.fromkeys(ids, not nonempty)
    gt_seen = dict.fromkeys(ids, False)
    for t in sorted(set().union(*wanted.values())):
        active = [k for k, oid in enumerate(ids) if t in wanted[oid]]
        gt = np.asarray(load_gt(t))
        pred = np.asarray(load_pred(t))
        if pred.shape != gt.shape:
            raise ValueError(
                f"{video} frame {t}: prediction shape {pred.shape} != GT {gt.shape} "
                f"([O,H,W] in object order {tuple(ids)})"
            )
        if nonempty:
            for k in active:
                g, p = bool(gt[k].any()), bool(pred[k].any())
                gt_seen[ids[k]] |= g
                started[ids[k]] |= g or p
            active = [k for k in active if started[ids[k]]]
        if not active:
            continue
        sel = np.asarray(active)
        p, g, v = _check_pair(pred[sel], gt[sel], load_void(t), 3)
        for k, a, b, gv, pv in zip(active, *_frame_scores(g, p, v, bound_th), strict=True):
            oid = ids[k]
            j[oid].append(float(a))
            f[oid].append(float(b))
            visible[oid].append(bool(gv))
            predicted[oid].append(bool(pv))
    return [
        _object_score(video, oid, j[oid], f[oid], visible[oid], predicted[oid], tags[oid])
        for oid in ids
        if j[oid] and (gt_seen[oid] or not nonempty)
    ]


def _tags_by_object(
    object_ids: Sequence[int],
    tags: Iterable[str] | Mapping[int, Iterable[str]],
) -> dict[int, tuple[str, ...]]:
    """Each object's tags: `tags` per object id (an id not in it: none), or one list for all."""
    if isinstance(tags, Mapping):
        return {int(o): tuple(tags.get(int(o), ())) for o in object_ids}
    shared = tuple(tags)
    return {int(o): shared for o in object_ids}


def _first_nonempty(gt_masks: np.ndarray, frames: Sequence[int]) -> dict[int, int]:
    first: dict[int, int] = {}
    for t in sorted(frames):
        for k in np.flatnonzero(gt_masks[t].reshape(gt_masks.shape[1], -1).any(axis=1)):
            first.setdefault(int(k), int(t))
    return first


def score_video(
    video: str,
    gt_masks: np.ndarray,
    pred_masks: np.ndarray,
    scored: np.ndarray | Sequence[int] | None = None,
    void: np.ndarray | None = None,
    object_ids: Sequence[int] | None = None,
    tags: Iterable[str] | Mapping[int, Iterable[str]] = (),
    bound_th: float = DEFAULT_BOUND_TH,
    protocol: Protocol | str | None = None,
    annotated: Sequence[int] | None = None,
    first_appearance: Mapping[int, int] | None = None,
    stop: Mapping[int, int] | None = None,
) -> list[ObjectScore]:
    """Score in-memory masks: bool [T,O,H,W] GT and prediction -> one row per object.

    Either `scored` (exactly these frames, for every object) or a `protocol` (default
    ``DAVIS``) applied to the `annotated` frames (default: all T). object_ids default to
    1..O; first_appearance defaults to each object's first annotated frame with GT pixels.
    tags: carried by every object, or {object id: tags}.
    """
    gt_masks = _as_mask(gt_masks, "gt_masks", 4)
    pred_masks = _as_mask(pred_masks, "pred_masks", 4)
    if gt_masks.shape != pred_masks.shape:
        raise ValueError(f"gt_masks {gt_masks.shape} and pred_masks {pred_masks.shape} differ")
    t, o = gt_masks.shape[:2]
    ids = list(range(1, o + 1)) if object_ids is None else [int(i) for i in object_ids]
    if len(ids) != o:
        raise ValueError(f"{video}: {len(ids)} object ids for {o} objects")
    if void is not None:
        void = _as_mask(void, "void", 3)
        if void.shape != (t, *gt_masks.shape[2:]):
            raise ValueError(f"void {void.shape} must be [T,H,W] = {(t, *gt_masks.shape[2:])}")
    nonempty = False
    if scored is not None:
        if protocol is not None:
            raise ValueError("pass either `scored` frames or a `protocol`, not both")
        idx = _scored_indices(scored, t).tolist()
        frames = {oid: idx for oid in ids}
    else:
        protocol = _protocol(protocol or DAVIS)
        ann = list(range(t)) if annotated is None else _scored_indices(annotated, t).tolist()
        if first_appearance is None:
            by_row = _first_nonempty(gt_masks, ann)
            first_appearance = {ids[k]: v for k, v in by_row.items()}
        frames = object_frames(ann, ids, protocol, first_appearance, stop)
        nonempty = protocol.start == "nonempty"
    return _score_frames(
        video,
        ids,
        frames,
        gt_masks.__getitem__,
        pred_masks.__getitem__,
        (lambda ti: None) if void is None else void.__getitem__,
        nonempty,
        bound_th,
        _tags_by_object(ids, tags),
    )


def score_record(
    record: ScoredVideo,
    predict_masks: Callable[[int], np.ndarray] | Mapping[int, np.ndarray],
    use_void: bool = False,
    bound_th: float = DEFAULT_BOUND_TH,
    protocol: Protocol | str | None = None,
    first_appearance: Mapping[int, int] | None = None,
    stop: Mapping[int, int] | None = None,
) -> list[ObjectScore]:
    """Score a video's annotated frames (a ``VideoRecord``, or any ``ScoredVideo``) under
    `protocol`.

    predict_masks maps a frame index to bool [O,H,W] in ``record.object_ids`` order
    (a dict or a callable). protocol defaults to ``default_protocol(record)``: the one its
    dataset format names (``SAV`` for SA-V), else ``APPEARANCE`` (= ``DAVIS`` when all
    objects are in the first frame). first_appearance defaults to ``record.first_appearance()`` (read only
    when the protocol needs it); stop: see ``object_frames``. Frames are read one at a
    time, so long videos never sit in memory. ``use_void=False`` reproduces official
    DAVIS numbers (void = background); True removes ``record.load_void(t)`` pixels.
    """
    protocol = default_protocol(record) if protocol is None else _protocol(protocol)
    if protocol.start in ("appearance", "after_appearance") and first_appearance is None:
        first_appearance = record.first_appearance()
    try:
        frames = object_frames(
            record.annotated_frames, record.object_ids, protocol, first_appearance, stop
        )
    except ValueError as e:
        raise ValueError(f"{record.name}: {e}") from None

    def load_pred(t: int) -> np.ndarray:
        if isinstance(predict_masks, Mapping):
            if t not in predict_masks:
                raise KeyError(f"{record.name}: no prediction for frame {t}")
            return predict_masks[t]
        return predict_masks(t)

    return _score_frames(
        record.name,
        record.object_ids,
        frames,
        record.load_masks,
        load_pred,
        record.load_void if use_void else (lambda t: None),
        protocol.start == "nonempty",
        bound_th,
        _tags_by_object(record.object_ids, _record_tags(record)),
    )


def _record_tags(record: ScoredVideo) -> tuple[str, ...] | Mapping[int, tuple[str, ...]]:
    per_object = getattr(record, "object_tags", None)
    return per_object if per_object is not None else tuple(getattr(record, "tags", ()))


# --------------------------------------------------------------------------- aggregate


@lru_cache(maxsize=4)
def _resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n]: how often each of n objects is drawn in each resample."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n)) + (np.arange(resamples) * n)[:, None]
    w = np.bincount(idx.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)
    w.setflags(write=False)
    return w


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    counts: Sequence[float] | np.ndarray | None = None,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval over objects of sum(values) / sum(counts), one entry
    per object (counts None: the mean of `values`; counts = events per object: a per-event
    mean). Objects are drawn with replacement `resamples` times from a fixed `seed`, so the
    same objects always give the same interval; NaN for fewer than 2 objects."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size < 2:
        return math.nan, math.nan
    c = np.ones_like(v) if counts is None else np.asarray(counts, dtype=np.float64).reshape(-1)
    if c.shape != v.shape:
        raise ValueError(f"{v.size} values but {c.size} counts")
    w = _resample_weights(v.size, resamples, seed)
    low, high = np.percentile((w @ v) / (w @ c), [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


# statistics `aggregate` gives a 95% interval for, as <key>_ci_low / <key>_ci_high
INTERVAL_KEYS = ("JF", "J_visible", "FP_absent", "latency_mean", "never_redetected")


def _pool(rows: Sequence[ObjectScore], intervals: bool) -> dict[str, float | int]:
    """J&F and the diagnostics of `rows` pooled per object (latency: per event)."""
    nan = math.nan
    out: dict[str, float | int] = {"J": nan, "F": nan, "JF": nan}
    samples: dict[str, tuple[list[float], list[float] | None]] = {}
    if rows:
        j = 100.0 * float(np.mean([r.j_mean for r in rows]))
        f = 100.0 * float(np.mean([r.f_mean for r in rows]))
        out.update(J=j, F=f, JF=(j + f) / 2)
        samples["JF"] = ([50.0 * (r.j_mean + r.f_mean) for r in rows], None)
    for key, field in (("J_visible", "j_visible"), ("FP_absent", "fp_absent")):
        vals = [100.0 * getattr(r, field) for r in rows if not math.isnan(getattr(r, field))]
        out[key] = float(np.mean(vals)) if vals else nan
        samples[key] = (vals, None)
    with_events = [r for r in rows if r.num_events]
    events = [v for r in with_events for v in (*r.latencies, *[LATENCY_CAP] * r.never_redetected)]
    never = sum(r.never_redetected for r in with_events)
    out["latency_mean"] = float(np.mean(events)) if events else nan
    out["latency_median"] = float(np.median(events)) if events else nan
    out["never_redetected"] = 100.0 * never / len(events) if events else nan
    out["num_events"] = len(events)
    counts = [float(r.num_events) for r in with_events]
    samples["latency_mean"] = (
        [sum(r.latencies) + LATENCY_CAP * r.never_redetected for r in with_events],
        counts,
    )
    samples["never_redetected"] = ([100.0 * r.never_redetected for r in with_events], counts)
    if intervals:
        for key in INTERVAL_KEYS:
            values, weights = samples.get(key, ([], None))
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = bootstrap_interval(values, weights)
    return out


# How validation logs `aggregate`'s keys (as val/<name>; per tag val/<tag>/<name>, for the
# keys in LOGGED_TAG_KEYS) and the table CLI reads them back. Counts and the per-tag
# intervals stay out of the logs (eval.py's metrics.json has them).
LOGGED_KEYS = {
    "J": "j",
    "F": "f",
    "JF": "jf",
    "JF_ci_low": "jf_ci_low",
    "JF_ci_high": "jf_ci_high",
    "J_visible": "j_visible",
    "FP_absent": "fp_absent",
    "latency_mean": "latency_mean",
    "latency_median": "latency_median",
    "never_redetected": "never_redetected",
}
LOGGED_TAG_KEYS = ("JF", "J_visible", "FP_absent", "latency_mean", "never_redetected")


def logged_values(result: Mapping[str, float | int]) -> dict[str, float]:
    """{log name: value} of an `aggregate` result: "jf", "j_visible", ..., "<tag>/jf"."""
    out = {name: float(result[key]) for key, name in LOGGED_KEYS.items()}
    for key, value in result.items():
        if key.startswith("tag/"):
            tag, stat = key[4:].rsplit("/", 1)
            if stat in LOGGED_TAG_KEYS:
                out[f"{tag}/{LOGGED_KEYS[stat]}"] = float(value)
    return out


def aggregate(rows: Iterable[ObjectScore], intervals: bool = True) -> dict[str, float | int]:
    """Pool ``ObjectScore`` rows per object across sequences; values x100 (latency: frames).

    Keys: J, F, JF (= (J+F)/2), J_recall, J_decay, F_recall, F_decay; the diagnostics
    J_visible and FP_absent (mean over the objects that have a visible / an absent frame),
    latency_mean and latency_median (over re-emergence events; one never re-detected counts
    as ``LATENCY_CAP``), never_redetected (share of events), num_events; num_videos,
    num_objects; with `intervals`, ``<key>_ci_low`` / ``<key>_ci_high`` for each of
    ``INTERVAL_KEYS`` (95% percentile bootstrap over objects, ``bootstrap_interval``); and
    for every tag seen the same under ``tag/<tag>/`` (but recall and decay), over the
    objects that carry it. No rows gives NaN scores and zero counts. A repeated (video,
    object_id) pair is an error: it would silently weight that object twice.
    """
    rows = list(rows)
    keys = [(r.video, r.object_id) for r in rows]
    if len(set(keys)) != len(keys):
        seen: set[tuple[str, int]] = set()
        dup = next(k for k in keys if k in seen or seen.add(k))
        raise ValueError(f"duplicate score row for video {dup[0]!r} object {dup[1]}")
    pooled = _pool(rows, intervals)
    out: dict[str, float | int] = {k: pooled[k] for k in ("J", "F", "JF")}
    for name, field in (
        ("J_recall", "j_recall"),
        ("J_decay", "j_decay"),
        ("F_recall", "f_recall"),
        ("F_decay", "f_decay"),
    ):
        vals = [getattr(r, field) for r in rows]
        out[name] = 100.0 * float(np.mean(vals)) if vals else float("nan")
    out.update(pooled)
    out["num_videos"] = len({r.video for r in rows})
    out["num_objects"] = len(rows)
    for tag in sorted({t for r in rows for t in r.tags}):
        sub = [r for r in rows if tag in r.tags]
        for key, val in _pool(sub, intervals).items():
            out[f"tag/{tag}/{key}"] = val
        out[f"tag/{tag}/num_objects"] = len(sub)
    return out
