"""Optical flow in the engine: a host provider runs one frame ahead in a worker thread, a
device provider inline; either way the model gets the same flow of the same frames, and
the frames are read once each, in order."""

import threading

import numpy as np
import pytest
import torch

from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.rules import TrackerRule
from mosam_train.models.mosam import MoSAMTracker
from mosam_train.models.video_sam import VideoSAM
from mosam_train.optical_flow import FarnebackFlow


class LoggedFrames:
    """Moving-square frames made on demand; every read is logged."""

    height, width = 64, 80
    frame_step = 1

    def __init__(self, num_frames: int) -> None:
        self.num_frames = num_frames
        self.reads: list[int] = []

    def image(self, t: int) -> torch.Tensor:
        self.reads.append(t)
        x = torch.full((3, 128, 128), -1.0)
        x[:, 30:70, 20 + 4 * t : 60 + 4 * t] = 1.0
        return x


class RecordingFlow:
    """A provider that records the thread and the frames of each call."""

    def __init__(self, runs_on_host: bool) -> None:
        self.runs_on_host = runs_on_host
        self.threads: list[str] = []

    def __call__(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        self.threads.append(threading.current_thread().name)
        # a flow that names its frames: (mean of current, mean of previous)
        n, _, h, w = current.shape
        values = torch.stack([current.mean((1, 2, 3)), previous.mean((1, 2, 3))], 1)
        return values[:, :, None, None].expand(n, 2, h, w).clone()


class FlowRule(TrackerRule):
    needs_flow = True

    def __init__(self, provider: RecordingFlow) -> None:
        self.flow_provider = provider
        self.seen: list[torch.Tensor | None] = []

    def remember(self, bank, frame_idx, entry, out, *, prompted, flow=None):
        self.seen.append(None if flow is None else flow[:, :, 0, 0].clone())
        super().remember(bank, frame_idx, entry, out, prompted=prompted, flow=flow)


@pytest.fixture(scope="module")
def model(micro):
    return VideoSAM(micro())


def prompts() -> dict[int, dict[int, np.ndarray]]:
    mask = np.zeros((64, 80), bool)
    mask[10:30, 20:50] = True
    return {1: {1: mask}}


@pytest.mark.parametrize("on_host", [True, False])
def test_flow_of_each_frame_reaches_the_model_from_its_thread(model, on_host):
    provider = RecordingFlow(on_host)
    rule = FlowRule(provider)
    frames = LoggedFrames(6)
    logits = [r.logits for r in VideoPropagator(model, rule).propagate(frames, prompts())]
    assert len(logits) == 5
    assert frames.reads == [1, 2, 3, 4, 5]  # from the first prompt on, once each, in order
    expected = [None] + [
        torch.tensor([[frames.image(t).mean(), frames.image(t - 1).mean()]]) for t in range(2, 6)
    ]
    for got, want in zip(rule.seen, expected, strict=True):
        assert (got is None and want is None) or torch.equal(got, want)
    here = threading.current_thread().name
    if on_host:
        assert provider.threads and all(t.startswith("optical-flow") for t in provider.threads)
    else:
        assert provider.threads == [here] * 4


def test_stopping_early_leaves_no_flow_thread(model):
    provider = RecordingFlow(True)
    stream = VideoPropagator(model, FlowRule(provider)).propagate(LoggedFrames(8), prompts())
    next(stream), next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("optical-flow")]


class InlineFarneback(FarnebackFlow):
    runs_on_host = False


def no_motion(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    return torch.zeros(current.shape[0], 2, *current.shape[-2:])


def test_flow_ahead_gives_the_logits_of_flow_inline(micro):
    """MoSAM's dense branch, Farneback in the worker thread or inline: identical logits
    (and the flow matters: a zero flow gives others)."""
    runs = []
    for provider in (FarnebackFlow(), InlineFarneback(), no_motion):
        model = MoSAMTracker(micro(), mgp={"sparse": False, "dense": True}).eval()
        with torch.no_grad():  # a non-zero dense branch, so the flow changes the masks
            torch.manual_seed(0)
            for p in model.mgp.parameters():
                p.copy_(torch.randn_like(p) * 0.2)
        model.flow_provider = provider
        frames = LoggedFrames(6)
        runs.append(
            torch.stack([r.logits for r in VideoPropagator(model).propagate(frames, prompts())])
        )
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
