"""Pictures of a result: J&F per video, J over time per object, and overlay videos.

All functions write a file and return its path; they take plain results (score rows,
per-frame values, label maps) so validation, `eval.py` and notebooks draw the same
pictures. matplotlib runs headless (Agg).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from mosam_train.metrics.jf import ObjectScore, aggregate, jaccard
from mosam_train.palette import voc_palette


def video_scores(rows: Iterable[ObjectScore]) -> dict[str, float]:
    """J&F (0-100) of each video: the mean of its objects' (J + F) / 2."""
    per: dict[str, list[float]] = {}
    for r in rows:
        per.setdefault(r.video, []).append(50.0 * (r.j_mean + r.f_mean))
    return {v: float(np.mean(s)) for v, s in per.items()}


def plot_video_scores(rows: Sequence[ObjectScore], path: str | Path, title: str = "") -> Path:
    """Bar chart of J&F per video, worst first, with the overall J&F as a line; bars are
    coloured by the video's first tag (of its first tagged object), so a weak tag shows as a
    block of one colour."""
    rows = list(rows)
    scores = video_scores(rows)
    tags = dict.fromkeys(scores, "untagged")
    for r in reversed(rows):  # the first tagged object of each video wins
        if r.tags:
            tags[r.video] = r.tags[0]
    names = sorted(scores, key=scores.get)
    palette = plt.get_cmap("tab10")
    colours = {t: palette(i % 10) for i, t in enumerate(sorted(set(tags.values())))}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(names) + 2), 4.0))
    ax.bar(range(len(names)), [scores[n] for n in names], color=[colours[tags[n]] for n in names])
    overall = aggregate(rows, intervals=False)["JF"] if rows else float("nan")
    ax.axhline(overall, color="black", lw=1, ls="--", label=f"overall J&F {overall:.1f}")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel("J&F")
    ax.set_ylim(0, 100)
    ax.set_title(title or f"J&F per video ({len(names)} videos)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(
        [*handles, ax.lines[0]], [*colours, ax.lines[0].get_label()], fontsize=7, loc="upper left"
    )
    return _save(fig, path)


def per_frame_j(
    gt: Mapping[int, np.ndarray],
    pred: Mapping[int, np.ndarray],
    object_ids: Sequence[int],
    void: Mapping[int, np.ndarray | None] | None = None,
) -> dict[int, list[float]]:
    """J of every object on every frame of `gt` ({frame: bool [O, H, W]}), predictions in
    the same layout; `jf.jaccard` per frame (1 where both masks are empty)."""
    frames = sorted(gt)
    out: dict[int, list[float]] = {oid: [] for oid in object_ids}
    for t in frames:
        v = None if void is None else void.get(t)
        for k, oid in enumerate(object_ids):
            out[oid].append(jaccard(pred[t][k], gt[t][k], v))
    return out


def plot_j_over_time(
    frames: Sequence[int],
    j: Mapping[int, Sequence[float]],
    path: str | Path,
    title: str = "",
    present: Mapping[int, Sequence[bool]] | None = None,
) -> Path:
    """J of each object against the frame index; frames where an object is absent from
    the ground truth are shaded, so a drop after an occlusion or exit shows at a glance."""
    fig, ax = plt.subplots(figsize=(8.0, 3.2))
    for oid, values in j.items():
        (line,) = ax.plot(frames, values, lw=1.2, label=f"object {oid}")
        if present is not None:
            for t, here in zip(frames, present[oid], strict=True):
                if not here:
                    ax.axvspan(t - 0.5, t + 0.5, color=line.get_color(), alpha=0.12, lw=0)
    ax.set_xlabel("frame")
    ax.set_ylabel("J")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def overlay_frames(
    frames: Iterable[np.ndarray], labels: Iterable[np.ndarray], alpha: float = 0.5
) -> list[np.ndarray]:
    """RGB frames with their label maps blended in the DAVIS palette colours."""
    colours = np.asarray(voc_palette(), dtype=np.float32).reshape(256, 3)
    out = []
    for rgb, lbl in zip(frames, labels, strict=True):
        img = rgb.astype(np.float32)
        fg = lbl > 0
        img[fg] = (1 - alpha) * img[fg] + alpha * colours[lbl[fg]]
        out.append(img.round().astype(np.uint8))
    return out


def index_labels(masks: np.ndarray) -> np.ndarray:
    """bool [O, H, W] -> uint8 label map with k + 1 for the k-th object (later objects on
    top where masks overlap), for pictures of any dataset (SA-V's ids exceed a uint8)."""
    out = np.zeros(masks.shape[1:], np.uint8)
    for k in range(min(len(masks), 254)):
        out[masks[k]] = k + 1
    return out


def plot_overlays(
    frames: Sequence[np.ndarray],
    rows: Mapping[str, Sequence[np.ndarray]],
    frame_ids: Sequence[int],
    path: str | Path,
    title: str = "",
) -> Path:
    """A grid of frames (columns) with label maps blended in and outlined, one row per
    entry of `rows` (e.g. prediction, ground truth); columns are titled with `frame_ids`."""
    names = list(rows)
    h, w = frames[0].shape[:2]
    size = 2.5
    fig, axes = plt.subplots(
        len(names), len(frames), squeeze=False,
        figsize=(size * len(frames) * w / max(h, w) + 0.4, size * len(names) * h / max(h, w) + 0.6),
    )  # fmt: skip
    colours = np.asarray(voc_palette(), dtype=np.float32).reshape(256, 3) / 255
    for r, name in enumerate(names):
        for c, img in enumerate(overlay_frames(frames, rows[name])):
            ax = axes[r][c]
            ax.imshow(img)
            lbl = rows[name][c]
            for k in np.unique(lbl[lbl > 0]):  # outlines: the tint alone is faint on texture
                bright = np.clip(colours[k] * 1.8, 0, 1)
                ax.contour(lbl == k, levels=[0.5], colors=[bright], linewidths=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {frame_ids[c]}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def write_overlay(
    frames: Iterable[np.ndarray],
    labels: Iterable[np.ndarray],
    path: str | Path,
    fps: float = 10.0,
) -> Path:
    """An overlay video: GIF (Pillow) for `.gif`, H.264/MPEG-4 through OpenCV for `.mp4`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = overlay_frames(frames, labels)
    if not images:
        raise ValueError(f"{path}: no frames to write")
    if path.suffix.lower() == ".gif":
        pil = [Image.fromarray(im) for im in images]
        pil[0].save(path, save_all=True, append_images=pil[1:], duration=1000 / fps, loop=0)
    elif path.suffix.lower() == ".mp4":
        import cv2

        h, w = images[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"{path}: OpenCV cannot write mp4 here. Fix: use a .gif path.")
        for im in images:
            writer.write(im[..., ::-1])
        writer.release()
    else:
        raise ValueError(f"{path}: use a .gif or .mp4 file name")
    return path


class PlottedVideo(Protocol):
    """What `plot_video` reads from a video (a `VideoRecord` has it all)."""

    name: str
    object_ids: Sequence[int]
    annotated_frames: Sequence[int]

    def load_masks(self, t: int) -> np.ndarray: ...
    def load_void(self, t: int) -> np.ndarray | None: ...
    def load_frames(self, ts: Sequence[int]) -> np.ndarray: ...


def plot_video(
    video: PlottedVideo, preds: Mapping[int, np.ndarray], out: str | Path, overlay: str | None
) -> None:
    """J over time per object (`<out>/<video>_j.png`, where ground truth exists) and, with
    `overlay` (gif | mp4), the predictions (bool [O, H, W] by frame, in `object_ids`
    order) blended into the frames."""
    out = Path(out)
    ids = list(video.object_ids)
    gt = {t: video.load_masks(t) for t in video.annotated_frames if t in preds}
    if gt:
        frames = sorted(gt)
        voids = {t: video.load_void(t) for t in frames}
        present = {oid: [bool(gt[t][k].any()) for t in frames] for k, oid in enumerate(ids)}
        plot_j_over_time(
            frames, per_frame_j(gt, preds, ids, voids), out / f"{video.name}_j.png",
            title=video.name, present=present,
        )  # fmt: skip
    if overlay:
        ts = sorted(preds)
        labels = []
        for t in ts:  # colour k + 1 for the k-th object (later objects on top)
            lbl = np.zeros(preds[t].shape[1:], np.uint8)
            for k in range(len(ids)):
                lbl[preds[t][k]] = k + 1
            labels.append(lbl)
        write_overlay(video.load_frames(ts), labels, out / f"{video.name}.{overlay}")


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
