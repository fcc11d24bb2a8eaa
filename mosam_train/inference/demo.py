"""The demo (`predict.py`): first-frame prompts from the command line, checked against
the video before any model work; then the streaming engine over the whole video, with
masks, boxes and an overlay video written frame by frame.

Prompt forms (exactly one; all on the first frame, pixels of the video, x to the right
and y down from the top-left pixel):

- ``box=<file>``: ``x,y,w,h`` per line, comma- or whitespace-separated (LaSOT's
  ``groundtruth.txt`` format). With ``box_per_line=object`` (default) each line is one
  object (ids 1, 2, ... in line order); with ``box_per_line=frame`` the file holds one box
  per frame of a single object (a LaSOT / GOT-10k ``groundtruth.txt``) and only its first
  line is read.
- ``box=[x,y,w,h]`` or ``box=[[x,y,w,h],[x,y,w,h]]`` inline (also ``box='x,y,w,h'``).
- ``points=[x,y]`` / ``[x,y,label]`` (one click), ``[[x,y,label],...]`` (clicks of one
  object), ``[[[x,y,label],...],[[x,y,label],...]]`` (one list per object); label 1 is a
  positive click, 0 a negative one (default 1); each object needs a positive click.
- ``mask=<png>``: a palette, grey or binary PNG of the first frame's size; every nonzero
  value is an object. Values 1..254 are kept as object ids; otherwise (a 0/255 mask) the
  values are numbered 1, 2, ... in increasing order.

Boxes must have a positive width and height and overlap the image; a box that extends
past the border is clipped to it (ground-truth boxes of tracking sets do so), with a
warning.

Outputs (under the run directory): ``masks/00000.png ...`` (palette PNG per frame, pixel
value = object id, overlaps resolved by the highest logit), ``boxes/<id>.txt`` (one
``x,y,w,h`` line per frame: the tight pixel-inclusive box of the object's own mask,
``0,0,0,0`` when the mask is empty, as LaSOT / GOT-10k result files mark "no box") and
``overlay.mp4`` (masks and boxes drawn on every frame, the input's size and frame count).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mosam_train.data.formats.tracking import read_boxes
from mosam_train.data.synthetic_tracking import ensure_synthetic_tracking
from mosam_train.errors import DataError
from mosam_train.inference.boxes import TrackedFrame, tracked_frame
from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.prompts import Box, PointPrompt, Prompt
from mosam_train.inference.tracking import format_boxes
from mosam_train.inference.video_input import VideoFrames, VideoInput
from mosam_train.inference.writers import save_png
from mosam_train.metrics.plots import overlay_frames
from mosam_train.metrics.tracking import boxes_array
from mosam_train.palette import voc_palette

log = logging.getLogger(__name__)

BOX_PER_LINE = ("object", "frame")
MAX_OBJECTS = 254  # ids of a uint8 label map
DEFAULT_FPS = 30.0
_NUMBERS = re.compile(r"^\s*[-+0-9.eE]+([\s,]+[-+0-9.eE]+)*\s*$")
_INLINE = "box=[x,y,w,h] (several objects: box=[[x,y,w,h],[x,y,w,h]])"


# ---------------------------------------------------------------------- prompt parsing
def _plain(value: Any) -> Any:
    """OmegaConf containers -> plain lists (Hydra gives `box=[1,2,3,4]` as a ListConfig)."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _depth(value: Any) -> int:
    """Nesting depth of a list of lists of numbers (a number: 0)."""
    if isinstance(value, list | tuple):
        if not value:
            return 1
        depths = {_depth(v) for v in value}
        return 1 + depths.pop() if len(depths) == 1 else -1
    return 0 if _is_number(value) else -1


def check_box(box: Sequence[float], size: tuple[int, int], where: str) -> Box:
    """A first-frame box checked against the image (height, width); clipped to it when it
    crosses the border. `where` names the box in messages."""
    height, width = size
    x, y, w, h = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise DataError(f"{where} ({_fmt(box)}) is not 4 finite numbers x,y,w,h.")
    if w <= 0 or h <= 0:
        raise DataError(
            f"{where} ({_fmt(box)}) has zero size (w and h must be > 0). Fix: give the "
            f"object's box on the first frame as x,y,w,h."
        )
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        raise DataError(
            f"{where} ({_fmt(box)}) lies outside the {width}x{height} image (x in "
            f"0..{width - 1}, y in 0..{height - 1}). Fix: give the box in pixels of the video "
            f"(x,y = top-left corner, w,h = size)."
        )
    clipped = (x0, y0, x1 - x0, y1 - y0)
    if clipped != (x, y, w, h):
        log.warning(
            "%s (%s) extends past the %dx%d image; clipped to %s",
            where, _fmt(box), width, height, _fmt(clipped),
        )  # fmt: skip
    return clipped


def _fmt(box: Sequence[float]) -> str:
    return ",".join(str(int(v)) if float(v).is_integer() else f"{float(v):g}" for v in box)


def parse_boxes(spec: Any, size: tuple[int, int], box_per_line: str = "object") -> list[Box]:
    """First-frame boxes from `box=` (file, inline list, or quoted 'x,y,w,h' string)."""
    spec = _plain(spec)
    if box_per_line not in BOX_PER_LINE:
        raise DataError(f"box_per_line={box_per_line!r}: use one of {BOX_PER_LINE}.")
    if isinstance(spec, str | Path):
        path = Path(spec)
        if path.is_file():
            rows = read_boxes(path)
            hint = ""
            if box_per_line == "frame":
                rows = rows[:1]
            elif len(rows) > 1:
                hint = (
                    f" Each of the {len(rows)} lines is one object; if the file holds one box "
                    f"per frame (a LaSOT or GOT-10k groundtruth.txt), pass box_per_line=frame."
                )
            if len(rows) > MAX_OBJECTS:
                raise DataError(f"{path}: {len(rows)} boxes, at most {MAX_OBJECTS}.{hint}", path)
            out = []
            for i, row in enumerate(rows, 1):
                try:
                    out.append(check_box(row, size, f"{path}: box {i}"))
                except DataError as e:
                    raise DataError(f"{e}{hint}", path) from None
            return out
        if isinstance(spec, str) and _NUMBERS.match(spec):
            values = [float(v) for v in re.split(r"[\s,]+", spec.strip())]
            if len(values) % 4:
                raise DataError(f"box={spec!r}: {len(values)} numbers, expected x,y,w,h.")
            spec = [values[i : i + 4] for i in range(0, len(values), 4)]
        else:
            raise DataError(
                f"{path}: box file not found. Fix: pass box=<file with x,y,w,h lines> or "
                f"inline {_INLINE}.",
                path,
            )
    given, depth = spec, _depth(spec)
    if depth == 1:
        spec = [spec]
    if depth not in (1, 2) or any(len(b) != 4 for b in spec):
        raise DataError(
            f"box={given!r}: expected 4 numbers x,y,w,h per box. Fix: write {_INLINE} (a bare "
            f"box=10,20,30,40 is a Hydra sweep over four values)."
        )
    if len(spec) > MAX_OBJECTS:
        raise DataError(f"box=: {len(spec)} boxes, at most {MAX_OBJECTS}.")
    return [check_box(b, size, f"box {i} of box=") for i, b in enumerate(spec, 1)]


def parse_points(spec: Any, size: tuple[int, int]) -> list[PointPrompt]:
    """First-frame clicks from `points=` (see module doc), one `PointPrompt` per object."""
    spec = _plain(spec)
    depth = _depth(spec)
    usage = (
        "Fix: write points=[x,y] or points=[[x,y,label],...] (label 1 positive, 0 negative); "
        "several objects: points=[[[x,y,1]],[[x,y,1],[x,y,0]]]."
    )
    if depth == 1:
        spec = [[spec]]
    elif depth == 2:
        spec = [spec]
    elif depth != 3:
        raise DataError(f"points={spec!r}: not a list of clicks. {usage}")
    height, width = size
    prompts = []
    for k, clicks in enumerate(spec, 1):
        if not clicks:
            raise DataError(f"points: object {k} has no clicks. {usage}")
        pts, labels = [], []
        for c in clicks:
            if len(c) not in (2, 3):
                raise DataError(
                    f"points: click {c} of object {k} is not [x,y] or [x,y,label]. {usage}"
                )
            x, y = float(c[0]), float(c[1])
            label = int(c[2]) if len(c) == 3 else 1
            if len(c) == 3 and c[2] not in (0, 1):
                raise DataError(f"points: click {c} of object {k} has label {c[2]}; use 1 or 0.")
            if not (0 <= x < width and 0 <= y < height):
                raise DataError(
                    f"points: click ({x:g}, {y:g}) of object {k} lies outside the "
                    f"{width}x{height} image. Fix: give clicks in pixels of the video."
                )
            pts.append((x, y))
            labels.append(label)
        if 1 not in labels:
            raise DataError(f"points: object {k} has no positive click (label 1). {usage}")
        prompts.append(PointPrompt(points=tuple(pts), labels=tuple(labels)))
    if len(prompts) > MAX_OBJECTS:
        raise DataError(f"points: {len(prompts)} objects, at most {MAX_OBJECTS}.")
    return prompts


def read_mask_prompt(path: str | Path, size: tuple[int, int]) -> dict[int, np.ndarray]:
    """{object id: bool mask} from a first-frame mask PNG (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: mask file not found. Fix: pass mask=<first-frame PNG>.", path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            values = np.array(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read the mask image ({e}). Fix: pass a PNG.", path) from e
    if values.ndim == 3:  # RGB(A): accepted only when grey
        rgb = values[..., :3]
        if not (rgb == rgb[..., :1]).all():
            raise DataError(
                f"{path}: a colour ({mode}) mask; object ids cannot be told from colours. Fix: "
                f"save it as a palette or grey PNG whose pixel values are object ids.",
                path,
            )
        values = rgb[..., 0]
    values = values.astype(np.uint8) if values.dtype == bool else values
    if values.shape != tuple(size):
        raise DataError(
            f"{path}: mask is {values.shape[1]}x{values.shape[0]} but the video is "
            f"{size[1]}x{size[0]}. Fix: draw the mask on the first frame at its size.",
            path,
        )
    found = [int(v) for v in np.unique(values) if v != 0]
    if not found:
        raise DataError(f"{path}: the mask is empty (all 0). Fix: mark the object(s).", path)
    if len(found) > MAX_OBJECTS:
        raise DataError(f"{path}: {len(found)} distinct values, at most {MAX_OBJECTS}.", path)
    keep = all(0 < v <= MAX_OBJECTS for v in found)
    return {(v if keep else k): values == v for k, v in enumerate(found, 1)}


def read_prompts(
    size: tuple[int, int],
    box: Any = None,
    points: Any = None,
    mask: Any = None,
    box_per_line: str = "object",
) -> dict[int, Prompt]:
    """{object id: prompt} on the first frame from exactly one of box / points / mask."""
    given = [n for n, v in (("box", box), ("points", points), ("mask", mask)) if v is not None]
    if len(given) != 1:
        which = " and ".join(given) if given else "none"
        raise DataError(
            f"give exactly one first-frame prompt: box=, points= or mask= (got {which}). "
            f"E.g. box=first_box.txt or {_INLINE}."
        )
    if box is not None:
        return {
            k: PointPrompt.from_box(b)
            for k, b in enumerate(parse_boxes(box, size, box_per_line), 1)
        }
    if points is not None:
        return dict(enumerate(parse_points(points, size), 1))
    return dict(read_mask_prompt(mask, size))


def demo_input(root: str | Path, sequence: str, box: Any, prompted: bool) -> tuple[Path, Any]:
    """(frames, box) of the default demo, run with no `video=`: sequence `sequence` of the
    synthetic LaSOT-layout set at `root` (generated on first use), prompted with its
    first_box.txt unless the command gave a prompt (`prompted`; `box` is then passed on)."""
    root = ensure_synthetic_tracking(root)
    folder = root / str(sequence)
    if not (folder / "img").is_dir():
        raise DataError(
            f"demo.sequence={sequence}: no such sequence in {root}. Fix: pick one "
            f"listed in {root / 'testing_set.txt'} as <class>/<name>.",
            folder,
        )
    return folder / "img", box if prompted else folder / "first_box.txt"


# ---------------------------------------------------------------------- outputs
class OverlayVideo:
    """An H.264 mp4 written frame by frame with PyAV (4:2:0 for even sizes, which every
    player reads; 4:4:4 for odd ones, which 4:2:0 cannot hold), the input's exact size."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float) -> None:
        import av

        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        height, width = size
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream(
            "libx264", rate=Fraction(fps).limit_denominator(1001)
        )
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self.stream.options = {"crf": "18"}

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def draw_overlay(
    rgb: np.ndarray, frame: TrackedFrame, object_ids: Sequence[int], palette: np.ndarray
) -> np.ndarray:
    """The frame with its label map blended in and each object's box outlined, both in
    the object's palette colour."""
    out = overlay_frames([rgb], [frame.labels])[0]
    thickness = max(1, round(min(rgb.shape[:2]) / 240))
    for oid, box in zip(object_ids, frame.boxes, strict=True):
        if box is None:
            continue
        x, y, w, h = (int(v) for v in box)
        colour = tuple(int(c) for c in palette[oid])
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, thickness)
    return out


@dataclass
class DemoResult:
    """What a demo run wrote, and how many frames each object was found on."""

    out_dir: Path
    num_frames: int
    object_ids: list[int]
    masks_dir: Path
    box_files: dict[int, Path]
    overlay: Path
    frames_with_box: dict[int, int] = field(default_factory=dict)


class DemoWriter:
    """Masks, boxes and overlay of each frame as it comes (nothing is held back)."""

    MASKS, BOXES, OVERLAY = "masks", "boxes", "overlay.mp4"

    def __init__(
        self, out_dir: Path, object_ids: Sequence[int], size: tuple[int, int], fps: float
    ) -> None:
        self.out_dir = out_dir
        self.object_ids = list(object_ids)
        self.palette = voc_palette()
        self.colours = np.asarray(self.palette, dtype=np.uint8).reshape(256, 3)
        self.masks_dir = out_dir / self.MASKS
        self.masks_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / self.BOXES).mkdir(parents=True, exist_ok=True)
        self.box_files = {oid: out_dir / self.BOXES / f"{oid}.txt" for oid in self.object_ids}
        self._boxes = {oid: p.open("w") for oid, p in self.box_files.items()}
        self.overlay = OverlayVideo(out_dir / self.OVERLAY, size, fps)
        self.frames_with_box = dict.fromkeys(self.object_ids, 0)
        self.num_frames = 0

    def write(self, frame: TrackedFrame, rgb: np.ndarray) -> None:
        save_png(self.masks_dir / f"{frame.frame_idx:05d}.png", frame.labels, self.palette)
        for oid, box in zip(self.object_ids, frame.boxes, strict=True):
            self._boxes[oid].write(format_boxes(boxes_array([box])))
            self.frames_with_box[oid] += box is not None
        self.overlay.write(draw_overlay(rgb, frame, self.object_ids, self.colours))
        self.num_frames += 1

    def close(self) -> DemoResult:
        for f in self._boxes.values():
            f.close()
        self.overlay.close()
        return DemoResult(
            self.out_dir,
            self.num_frames,
            self.object_ids,
            self.masks_dir,
            self.box_files,
            self.overlay.path,
            self.frames_with_box,
        )


def run_demo(
    propagator: VideoPropagator,
    video: VideoInput,
    prompts: Mapping[int, Prompt],
    out_dir: str | Path,
    image_size: int,
    fps: float | None = None,
    read_ahead: int = 16,
    autocast: contextlib.AbstractContextManager | None = None,
) -> DemoResult:
    """Segment `video` from first-frame `prompts` ({object id: prompt}) and write the
    outputs under `out_dir`, frame by frame, with a progress bar."""
    out_dir = Path(out_dir)
    ids = sorted(prompts)
    frames = VideoFrames(video, image_size, read_ahead=read_ahead)
    fps = float(fps or video.fps or DEFAULT_FPS)
    writer = DemoWriter(out_dir, ids, (video.height, video.width), fps)
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns) as progress, autocast or contextlib.nullcontext():
            name = video.path.name if video.path.is_file() else "/".join(video.path.parts[-2:])
            task = progress.add_task(name, total=video.num_frames)
            for step in propagator.propagate(frames, {0: dict(prompts)}):
                frame = tracked_frame(step, ids)
                writer.write(frame, frames.rgb(frame.frame_idx))
                progress.advance(task)
    finally:
        done = writer.close()
    return done
