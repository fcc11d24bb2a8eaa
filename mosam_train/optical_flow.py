"""Optical flow providers, for the dense motion branch: the training data workers
(`data.datamodule`) and the model (`models.mosam`) both build them, so they live below both.

Direction, everywhere in this project: a flow field maps the **current** frame back to the
**previous** one. `flow[:, 0/1, y, x] = (dx, dy)` means the content at pixel (x, y) of the
current frame was at (x + dx, y + dy) in the previous frame. Warping the previous mask into
the current frame is then a plain lookup, `warped(x, y) = previous(x + dx, y + dy)`
(`models.motion.dense.warp_backward`), with no flow inversion and no holes.

Providers take frames as the model sees them (normalised [N, 3, S, S], after any
augmentation) and return float [N, 2, S, S] in pixels. `FarnebackFlow` (OpenCV, no weights)
is cheap enough to run in the training data workers; `RaftFlow` (torchvision RAFT, from a
weights file) is a module meant to run on the model's device.

`runs_on_host` declares where a provider computes: True (Farneback) means on the CPU, from
host tensors, releasing the GIL, so the streaming engine runs it in a worker thread one
frame ahead of the model; False or absent (RAFT, any plain function) means inline, on the
frames' device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mosam_train.checkpoint_files import load_checkpoint_file
from mosam_train.images import denormalize


class FlowProvider(Protocol):
    runs_on_host: bool

    def __call__(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Flow current -> previous, float [N, 2, S, S] in pixels."""
        ...


def _gray_uint8(frames: torch.Tensor) -> np.ndarray:
    rgb = (denormalize(frames.detach().float().cpu()) * 255).round().to(torch.uint8)
    rgb = rgb.permute(0, 2, 3, 1).numpy()
    return np.stack([cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY) for x in rgb])


class FarnebackFlow:
    """Dense flow by OpenCV's Farneback polynomial expansion: no weights, about 6 ms per
    128 px frame pair on one core (measured with cv2.setNumThreads(1), as in the data
    workers). Parameters are `cv2.calcOpticalFlowFarneback`'s.

    `max_side`: frames larger than this are downscaled to it for the flow, which is then
    upscaled (and its vectors scaled) back. The dense encoder pools its inputs to SAM's
    mask-input resolution (256 px at 1024) anyway, and the cost grows with the pixel count:
    at 1024 px, `max_side=256` is what keeps flow in the data workers affordable.
    """

    runs_on_host = True

    def __init__(
        self,
        pyr_scale: float = 0.5,
        levels: int = 3,
        winsize: int = 15,
        iterations: int = 3,
        poly_n: int = 5,
        poly_sigma: float = 1.2,
        max_side: int | None = None,
    ) -> None:
        self.params = (pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, 0)
        self.max_side = max_side
        # The streaming engine passes each frame twice, as `current` and then as `previous`
        # of the next call (the same tensor object, never modified; the calls come one at
        # a time, from one thread): its grey image is kept for that second call.
        self._last: tuple[torch.Tensor, np.ndarray] | None = None

    def __repr__(self) -> str:
        return f"FarnebackFlow{self.params[:-1]}(max_side={self.max_side})"

    def _scale(self, h: int, w: int) -> float:
        if self.max_side is not None and max(h, w) > self.max_side:
            return self.max_side / max(h, w)
        return 1.0

    def _gray(self, frames: torch.Tensor) -> np.ndarray:
        """Grey uint8 [N, h, w] at the size the flow is computed at."""
        last = self._last
        if last is not None and last[0] is frames:
            return last[1]
        gray = _gray_uint8(frames)
        h, w = gray.shape[1:]
        scale = self._scale(h, w)
        if scale != 1.0:
            small = (round(w * scale), round(h * scale))
            gray = np.stack([cv2.resize(x, small, interpolation=cv2.INTER_AREA) for x in gray])
        return gray

    def __call__(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        cur, prev = self._gray(current), self._gray(previous)
        self._last = (current, cur)
        h, w = current.shape[-2:]
        scale = self._scale(h, w)
        # calcOpticalFlowFarneback(a, b) returns f with a(y, x) ~ b(y + f_y, x + f_x): a is
        # the frame the field lives on, so (current, previous) gives current -> previous.
        flows = [
            cv2.calcOpticalFlowFarneback(c, p, None, *self.params)
            for c, p in zip(cur, prev, strict=True)
        ]
        if scale != 1.0:
            flows = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) / scale for f in flows]
        out = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)
        return out.to(device=current.device, dtype=torch.float32)


class RaftFlow(nn.Module):
    """torchvision RAFT (small or large) from a weights file (torchvision's state dict).

    Frames are resized to what RAFT accepts (sides multiples of 8, at least 128) and the
    flow is scaled back to the frames' size.
    """

    runs_on_host = False  # a torch module on the model's device: the engine runs it inline

    def __init__(self, weights: str | Path, size: str = "small", num_flow_updates: int = 12):
        super().__init__()
        from torchvision.models.optical_flow import raft_large, raft_small

        builders = {"small": raft_small, "large": raft_large}
        if size not in builders:
            raise ValueError(f"RAFT size must be one of {sorted(builders)}, got {size!r}")
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"RAFT weights {path}: no such file. Fix: download torchvision's "
                f"raft_{size} weights (torchvision.models.optical_flow.Raft_"
                f"{size.capitalize()}_Weights) and pass their path, or use flow=farneback."
            )
        self.raft = builders[size](weights=None)
        state = load_checkpoint_file(path, expected=f"torchvision raft_{size} weights")
        try:
            self.raft.load_state_dict(state)
        except RuntimeError as e:
            raise RuntimeError(
                f"{path} is not a torchvision raft_{size} state dict ({e}). Fix: pass "
                f"weights for raft_{size}, or the other `size`."
            ) from None
        self.raft.eval().requires_grad_(False)
        self.num_flow_updates = num_flow_updates

    def train(self, mode: bool = True) -> RaftFlow:
        # A fixed estimator: never switches to training behaviour.
        return super().train(False)

    @torch.no_grad()
    def forward(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        h, w = current.shape[-2:]
        # RAFT needs sides that are multiples of 8 and at least 128 (its correlation pyramid)
        size = (max(128, -(-h // 8) * 8), max(128, -(-w // 8) * 8))
        a, b = (
            F.interpolate(denormalize(x) * 2 - 1, size=size, mode="bilinear", align_corners=False)
            for x in (current, previous)
        )
        # RAFT's flow maps its first image onto its second: current -> previous.
        flow = self.raft(a, b, num_flow_updates=self.num_flow_updates)[-1].float()
        if size != (h, w):
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
            flow = flow * flow.new_tensor([w / size[1], h / size[0]])[None, :, None, None]
        return flow


def build_flow_provider(name: str = "farneback", **kwargs) -> FlowProvider:
    """`farneback` (default, no weights) or `raft` (needs `weights=PATH`, optional `size`)."""
    if name == "farneback":
        return FarnebackFlow(**kwargs)
    if name == "raft":
        return RaftFlow(**kwargs)
    raise ValueError(f"unknown flow provider {name!r}: use 'farneback' or 'raft'")
