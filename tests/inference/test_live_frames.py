"""Frames that arrive one at a time (`LiveFrames`, a TraX session) give the results of the
same frames read from a file (of 16 frames or more), a host flow provider included (it then runs inline: the next
frame does not exist yet); and the flow-warp baseline follows motion."""

import threading

import numpy as np
import torch

from mosam_train.inference.baselines import CopyFirstMask, FlowWarp
from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.sources import ChunkedFrames, LiveFrames
from mosam_train.models.mosam import MoSAMTracker
from mosam_train.optical_flow import FarnebackFlow

H, W = 72, 96


def square_video(n: int, step: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [n, H, W, 3] frames of a textured square moving right by `step` px a frame,
    and its masks bool [n, H, W]."""
    rng = np.random.default_rng(0)
    texture = rng.integers(60, 255, (24, 24, 3), dtype=np.uint8)
    frames = np.full((n, H, W, 3), 20, np.uint8)
    masks = np.zeros((n, H, W), bool)
    for t in range(n):
        x = 10 + step * t
        frames[t, 20:44, x : x + 24] = texture
        masks[t, 20:44, x : x + 24] = True
    return frames, masks


def run_live(propagator, frames: np.ndarray, prompts) -> list[torch.Tensor]:
    source = LiveFrames((H, W), 128)
    stream = iter(propagator.propagate(source, prompts))
    out = []
    for rgb in frames:
        source.push(rgb)
        out.append(next(stream).logits)
    return out


def test_live_frames_give_the_logits_of_a_file_with_flow_inline(micro):
    """On a video of 16 frames or more (see `LiveFrames` for shorter ones)."""
    frames, masks = square_video(17)
    model = MoSAMTracker(micro(), mgp={"sparse": False, "dense": True}).eval()
    with torch.no_grad():  # a non-zero dense branch, so the flow changes the masks
        torch.manual_seed(0)
        for p in model.mgp.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    calls = []

    class Recorded(FarnebackFlow):
        def __call__(self, current, previous):
            calls.append(threading.current_thread().name)
            return super().__call__(current, previous)

    model.flow_provider = Recorded()
    prompts = {0: {1: masks[0]}}
    read = ChunkedFrames(lambda ts: frames[list(ts)], len(frames), (H, W), 128)
    from_file = [r.logits for r in VideoPropagator(model).propagate(read, prompts)]
    calls.clear()
    live = run_live(VideoPropagator(model), frames, prompts)
    assert len(live) == len(from_file) == 17
    for a, b in zip(live, from_file, strict=True):
        assert torch.equal(a, b)
    assert calls == [threading.current_thread().name] * 16  # inline, once per new frame


def test_live_frames_refuse_a_frame_not_pushed_and_a_size_change():
    source = LiveFrames((H, W), 128)
    source.push(np.zeros((H, W, 3), np.uint8))
    try:
        source.image(1)
        raise AssertionError("frame 1 was never pushed")
    except RuntimeError as e:
        assert "frame 1 asked for, frame 0 received last" in str(e)
    try:
        source.push(np.zeros((H + 1, W, 3), np.uint8))
        raise AssertionError("a frame of another size was taken")
    except ValueError as e:
        assert "73x96" in str(e)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_flow_warp_follows_a_moving_square_where_copying_stays_behind():
    frames, masks = square_video(10)
    prompts = {0: {1: masks[0]}}
    warped = [r.logits[0] > 0 for r in FlowWarp().propagate(LiveFramesOf(frames), prompts)]
    copied = [r.logits[0] > 0 for r in CopyFirstMask().propagate(LiveFramesOf(frames), prompts)]
    last = masks[-1]
    assert iou(warped[-1].numpy(), last) > 0.6
    assert iou(copied[-1].numpy(), last) < 0.1  # it moved 27 px, more than its width


class LiveFramesOf(ChunkedFrames):
    def __init__(self, frames: np.ndarray) -> None:
        super().__init__(lambda ts: frames[list(ts)], len(frames), (H, W), 128)
