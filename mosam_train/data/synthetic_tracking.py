"""The procedural videos of `mosam_train.data.synthetic` as a box-tracking set in the LaSOT
layout: a tracking benchmark, and the demo's default input, that needs no download.

Sequence i is the synthetic *val* video i (same seed, same frames as ``val_<i>`` of the VOS
set) with one target: the object the video's tag is about (the one that is occluded,
leaves the frame, or has a look-alike nearby; object 1 in plain videos). Its class is the
tag (``occlusion``, ``exit_reentry``, ``distractor``, ``plain``), so LaSOT's per-class
layout groups the failure modes: ``occlusion/occlusion-1``, ``exit_reentry/exit_reentry-1``...

- groundtruth.txt: the tight box of the target's visible pixels (pixel-inclusive
  ``x, y, w, h``, as `inference.prompts` boxes); ``0,0,0,0`` where none is visible;
- out_of_view.txt: 1 where the whole shape is outside the frame;
- full_occlusion.txt: 1 where the shape is inside the frame but no pixel of it is visible;
- first_box.txt: the first frame's box alone (a box file for ``predict.py``);
- testing_set.txt: every sequence (the whole set is the test split); meta.json: the spec.

Written to a temp folder and renamed into place, like the VOS set.

    python -m mosam_train.data.synthetic_tracking [--root data/synthetic_lasot] [--force]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from mosam_train.data.synthetic import (
    _SPLIT_CODE,
    GENERATOR_VERSION,
    JPEG_QUALITY,
    MIN_FRAMES,
    _render,
    _sample_scene,
    _valid,
    generate_once,
    video_tag,
)
from mosam_train.errors import DataError

TRACKING_VERSION = 1  # bump whenever the written bytes change (with GENERATOR_VERSION)


@dataclass(frozen=True)
class TrackingSpec:
    """Everything that determines the written bytes (stored in meta.json)."""

    seed: int = 0
    num_sequences: int = 40
    num_frames: int = 32
    height: int = 120
    width: int = 160


def sequence_name(index: int) -> tuple[str, str]:
    """(class, sequence name) of sequence `index`: the tag, numbered from 1 per tag."""
    cls = video_tag(index) or "plain"
    return cls, f"{cls}-{index // 4 + 1}"


def target_track(
    rng: np.random.Generator, num_frames: int, height: int, width: int, tag: str | None
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Frames, visible mask of the target [T, H, W], and its in-frame and visible areas.

    Draws exactly as `synthetic.make_video` (same retries, same random stream), so the
    frames are those of the VOS set's video with the same seed."""
    for _ in range(200):
        scene = _sample_scene(rng, num_frames, height, width, tag)
        frames, labels, full = _render(scene, rng, num_frames, height, width)
        if _valid(scene, tag, labels, full):
            target = scene.target or 1
            masks = np.stack(labels) == target
            return frames, masks, full[target], masks.reshape(num_frames, -1).sum(1)
    raise RuntimeError(f"could not sample a valid '{tag}' video; check the frame size")


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel-inclusive ``x, y, w, h`` of a bool mask; ``0, 0, 0, 0`` when it is empty."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return 0, 0, 0, 0
    x0, y0 = int(xs.min()), int(ys.min())
    return x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1


def _write_sequence(out: Path, spec: TrackingSpec, index: int) -> str:
    rng = np.random.default_rng([spec.seed, _SPLIT_CODE["val"], index])
    frames, masks, in_frame, visible = target_track(
        rng, spec.num_frames, spec.height, spec.width, video_tag(index)
    )
    cls, name = sequence_name(index)
    folder = out / cls / name
    (folder / "img").mkdir(parents=True)
    for t, rgb in enumerate(frames):
        cv2.imwrite(
            str(folder / "img" / f"{t + 1:08d}.jpg"),
            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
        )
    boxes = [mask_box(m) for m in masks]
    (folder / "groundtruth.txt").write_text("".join(",".join(map(str, b)) + "\n" for b in boxes))
    out_of_view = (in_frame == 0).astype(int)
    occluded = ((in_frame > 0) & (visible == 0)).astype(int)
    (folder / "out_of_view.txt").write_text(",".join(map(str, out_of_view)) + "\n")
    (folder / "full_occlusion.txt").write_text(",".join(map(str, occluded)) + "\n")
    (folder / "first_box.txt").write_text(",".join(map(str, boxes[0])) + "\n")
    return name


def _generate(out: Path, spec: TrackingSpec) -> None:
    names = [_write_sequence(out, spec, i) for i in range(spec.num_sequences)]
    (out / "testing_set.txt").write_text("".join(n + "\n" for n in names))
    meta = {
        "name": "mosam-train synthetic LaSOT",
        "version": TRACKING_VERSION,
        "generator_version": GENERATOR_VERSION,
        "layout": "LaSOT (<class>/<class>-<n>/img/00000001.jpg, groundtruth.txt, "
        "full_occlusion.txt, out_of_view.txt)",
        "spec": asdict(spec),
        "source": {n: f"val_{i:04d}" for i, n in enumerate(names)},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def ensure_synthetic_tracking(
    root: str | Path,
    seed: int = 0,
    *,
    num_sequences: int = 40,
    num_frames: int = 32,
    height: int = 120,
    width: int = 160,
    force: bool = False,
) -> Path:
    """Generate the set at `root` unless it is already there (same spec); returns `root`."""
    root = Path(root)
    spec = TrackingSpec(seed, num_sequences, num_frames, height, width)
    if num_sequences < 1 or num_frames < MIN_FRAMES:
        raise ValueError(f"invalid spec {spec}: >= 1 sequence of >= {MIN_FRAMES} frames")
    generate_once(
        root,
        {"spec": asdict(spec), "version": TRACKING_VERSION, "generator_version": GENERATOR_VERSION},
        "synthetic tracking set",
        "mosam_train.data.synthetic_tracking",
        lambda tmp: _generate(tmp, spec),
        force,
    )
    return root


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m mosam_train.data.synthetic_tracking",
        description=__doc__.split("\n\n")[0],
    )
    d = TrackingSpec()
    p.add_argument("--root", default="data/synthetic_lasot", help="default: %(default)s")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--num-sequences", type=int, default=d.num_sequences)
    p.add_argument("--num-frames", type=int, default=d.num_frames)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--force", action="store_true", help="replace an existing synthetic set")
    a = p.parse_args(argv)
    root = Path(a.root)
    existed = root.is_dir() and any(root.iterdir())
    try:
        ensure_synthetic_tracking(
            root, a.seed, num_sequences=a.num_sequences, num_frames=a.num_frames,
            height=a.height, width=a.width, force=a.force,
        )  # fmt: skip
    except DataError as e:
        raise SystemExit(f"error: {e}") from None
    names = (root / "testing_set.txt").read_text().split()
    state = "already there (use --force to regenerate)" if existed and not a.force else "written"
    print(f"{root}: {len(names)} sequences, {state}")


if __name__ == "__main__":
    main()
