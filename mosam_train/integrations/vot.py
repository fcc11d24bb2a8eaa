"""The VOT toolkit's tracker: `python -m mosam_train.integrations.vot ckpt=PATH [tracker=...]
[sam2=...] [region=auto|mask|rectangle] [record=PATH]`, or `baseline=copy_first` (the static
baseline). See README "VOT / VOTS" and configs/vot.yaml.

The toolkit (`vot-toolkit`, extra `vot`) starts this program and talks to it over TraX
(`vot-trax`) on stdin/stdout: an initialisation (a frame and one region per object, a mask
or a rectangle; several objects for VOTS), then one frame at a time. Each session runs the
project's streaming engine on a `LiveFrames` source, so the frames are tracked in the order
they come, from whichever frame of the sequence the toolkit starts at and in either
direction (its anchor-based runs go backwards too). The toolkit may start a new session on
the same process at any time.

Answers: each object as the region it was initialised with (`region=auto`: a mask for a
mask, the tight box of the predicted mask for a rectangle), or as `region=` says for all,
with the object score as `confidence` (read by the long-term analyses).

Bad input never hangs the toolkit: a configuration that cannot run (no checkpoint, unknown
tracker, a region type this tracker cannot produce) is sent back as the reason the session
ended, at the first request, before any frame is tracked; a frame that cannot be read ends
the session naming the file. Either way the process exits 1. Nothing but TraX is written to
stdout; messages go to stderr, which the toolkit shows in its log.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from mosam_train.dataset_files import read_rgb
from mosam_train.errors import DataError
from mosam_train.inference.boxes import mask_to_box
from mosam_train.inference.engine import FrameResult
from mosam_train.inference.prompts import PointPrompt, Prompt
from mosam_train.inference.sources import LiveFrames
from mosam_train.inference.vos import Propagator, object_masks
from mosam_train.models.shipped import resolve_weights
from mosam_train.startup import compose_config
from mosam_train.tasks.inference_model import autocast, mask_propagator

MASK, RECTANGLE = "mask", "rectangle"  # TraX's names of the region types answered
REGIONS = ("auto", MASK, RECTANGLE)


class SessionError(RuntimeError):
    """A request this tracker cannot serve; the message is the reason sent to the toolkit."""


def compose_vot(overrides: list[str]) -> DictConfig:
    """configs/vot.yaml with command-line `overrides`, as eval.py composes its config (no
    run directory: the toolkit starts the tracker in a temporary folder)."""
    return compose_config("vot", overrides)


def check_config(cfg: DictConfig) -> None:
    """What can be refused before the model loads: the region type and the checkpoint."""
    if cfg.region not in REGIONS:
        raise SessionError(
            f"region={cfg.region}: this tracker reports masks, or rectangles (the tight box of "
            f"its mask); it cannot produce {cfg.region}. Fix: region=auto (each object as it "
            f"was initialised), region=mask or region=rectangle."
        )
    if not cfg.get("baseline") and cfg.get("ckpt") and not resolve_weights(cfg.ckpt).is_file():
        raise SessionError(
            f"ckpt={cfg.ckpt}: no such file. Fix: an absolute path (the toolkit runs the "
            f"tracker in a temporary folder) to a .ckpt of this project or an official SAM 2 "
            f".pt (with sam2=<size>)."
        )


def read_frame(images: dict[str, Any], size: tuple[int, int] | None = None) -> np.ndarray:
    """The colour image of a TraX request (a file path) as uint8 [H, W, 3]; a file that
    cannot be read raises DataError naming it."""
    from trax.image import FileImage

    image = images.get("color")
    if not isinstance(image, FileImage):
        raise SessionError(f"the request carries no colour image file (got {sorted(images)})")
    return read_rgb(Path(image.path()), size)


def prompt_of(region: Any, size: tuple[int, int], index: int) -> tuple[Prompt, str]:
    """A TraX region -> (the engine's prompt, its type): a rectangle -> a box prompt, a
    mask -> a bool mask at the frame's size. An empty region cannot start a track."""
    if region.type == RECTANGLE:
        x, y, w, h = region.bounds()
        if w <= 0 or h <= 0:
            raise SessionError(f"object {index}: empty rectangle {x, y, w, h} at initialisation")
        return PointPrompt.from_box((x, y, w, h)), RECTANGLE
    if region.type == MASK:
        part = region.array()
        ox, oy = region.offset()
        full = np.zeros(size, dtype=bool)
        y0, x0 = max(oy, 0), max(ox, 0)
        y1, x1 = min(oy + part.shape[0], size[0]), min(ox + part.shape[1], size[1])
        if y1 > y0 and x1 > x0:
            full[y0:y1, x0:x1] = part[y0 - oy : y1 - oy, x0 - ox : x1 - ox] > 0
        if not full.any():
            raise SessionError(f"object {index}: empty mask at initialisation")
        return full, MASK
    raise SessionError(
        f"object {index}: region type {region.type!r} (this tracker takes rectangle or mask)"
    )


def box_mask(prompt: PointPrompt, size: tuple[int, int]) -> np.ndarray:
    """The pixels of a box prompt (pixel-inclusive, see `inference.prompts`) as a mask: what
    a baseline (which takes masks only) starts a box-initialised object from."""
    assert prompt.box is not None
    x, y, w, h = prompt.box
    mask = np.zeros(size, dtype=bool)
    c0, r0 = max(round(x), 0), max(round(y), 0)
    mask[r0 : max(round(y + h), r0 + 1), c0 : max(round(x + w), c0 + 1)] = True
    return mask


def trax_region(mask: np.ndarray, kind: str) -> Any:
    """One object's answer: its mask (cropped to its box) or the box; empty when lost."""
    from trax.region import Mask, Rectangle

    box = mask_to_box(mask)
    if kind == RECTANGLE:
        return Rectangle.create(*(box or (0, 0, 0, 0)))
    if box is None:
        return Mask.create(np.zeros((1, 1), dtype=np.uint8))
    x, y, w, h = (int(v) for v in box)
    return Mask.create(np.ascontiguousarray(mask[y : y + h, x : x + w], dtype=np.uint8), x, y)


class Session:
    """One initialisation and the frames after it, on a `LiveFrames` source."""

    def __init__(
        self,
        propagator: Propagator,
        image_size: int,
        frame: np.ndarray,
        regions: list[Any],
        answer: str,
        boxes_as_masks: bool,
    ) -> None:
        if not regions:
            raise SessionError("initialisation without objects")
        size = frame.shape[:2]
        prompts, kinds = {}, []
        for k, region in enumerate(regions, start=1):
            prompt, kind = prompt_of(region, size, k)
            if boxes_as_masks and isinstance(prompt, PointPrompt):
                prompt = box_mask(prompt, size)
            prompts[k] = prompt
            kinds.append(kind if answer == "auto" else answer)
        self.ids, self.kinds = list(prompts), kinds
        self.frames = LiveFrames(size, image_size, name="the TraX session")
        self._results: Iterator[FrameResult] = iter(propagator.propagate(self.frames, {0: prompts}))

    def close(self) -> None:
        """Stop the engine's generator (and any worker it holds)."""
        close = getattr(self._results, "close", None)
        if close is not None:
            close()

    def step(self, frame: np.ndarray) -> tuple[list[tuple[Any, dict]], list[dict]]:
        """Track `frame`: the TraX answer, and what was answered (for `record`)."""
        t = self.frames.push(frame)
        result = next(self._results)
        assert result.frame_idx == t, (result.frame_idx, t)
        masks = object_masks(result.logits, result.object_ids, self.ids)
        scores = dict(
            zip(
                result.object_ids, torch.sigmoid(result.object_scores.float()).tolist(), strict=True
            )
        )
        answer, seen = [], []
        for oid, mask, kind in zip(self.ids, masks, self.kinds, strict=True):
            answer.append((trax_region(mask, kind), {"confidence": float(scores[oid])}))
            seen.append({"id": oid, "region": kind, "pixels": int(mask.sum())})
        return answer, seen


def serve(cfg: DictConfig | None, model: tuple[Propagator, int] | None, problem: str | None) -> int:
    """The TraX loop with `model` (propagator, image size); `problem`: why the configuration
    cannot run, sent back at the first request. Returns the exit status."""
    from trax import TraxStatus
    from trax.region import Region
    from trax.server import Server

    server = Server(
        [Region.MASK, Region.RECTANGLE], ["path"], tracker_name="mosam-train",
        tracker_family="SAM 2", multiobject=True,
    )  # fmt: skip
    session: Session | None = None
    count = 0
    try:
        while True:
            request = server.wait()
            if request.type == TraxStatus.QUIT:
                return 0
            if problem is not None or cfg is None or model is None:
                raise SessionError(problem)
            size = None if session is None else (session.frames.height, session.frames.width)
            if request.type == TraxStatus.INITIALIZE:
                if session is not None:
                    session.close()
                frame = read_frame(request.image)
                regions = [r for r, _ in request.objects]
                baseline = bool(cfg.get("baseline"))  # baselines take masks only
                session = Session(*model, frame, regions, cfg.region, baseline)
                count += 1
            elif session is None:
                raise SessionError("a frame came before any initialisation")
            elif request.objects:
                raise SessionError(
                    "objects added after initialisation; this tracker takes every object at "
                    "the initialisation of a session"
                )
            else:
                frame = read_frame(request.image, size)
            with autocast(cfg):
                answer, seen = session.step(frame)
            server.status(answer)
            if cfg.get("record"):
                t = session.frames.received - 1
                line = {"session": count, "frame": t, "file": request.image["color"].path()}
                with Path(cfg.record).open("a") as f:
                    f.write(json.dumps({**line, "objects": seen}) + "\n")
    except Exception as e:  # the session ends with the reason, never a hang
        if not isinstance(e, SessionError | DataError):
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        server.quit(reason=str(e))
        return 1
    finally:
        if session is not None:
            session.close()


def main(argv: list[str]) -> int:
    # stdout carries TraX: whatever Python prints goes to stderr (the toolkit's log)
    sys.stdout = sys.stderr
    cfg, model, problem = None, None, None
    try:
        cfg = compose_vot(argv)
        check_config(cfg)
        model = mask_propagator(cfg, "the VOT tracker")
    except Exception as e:  # any refusal is the toolkit's to show, at its first request
        problem = str(e) if isinstance(e, SessionError) else f"{type(e).__name__}: {e}"
        print(f"error: {problem}", file=sys.stderr)
    return serve(cfg, model, problem)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
