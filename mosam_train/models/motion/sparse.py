"""Sparse motion: keypoints of each object's past masks, forecast into the current frame.

Keypoints (normalised (x, y) in [0, 1], pixel edges for the box): the centroid, the two box
corners and the centroids of the four quadrants around the centroid, which follow shape and
rotation as well as position. A trajectory is the last L frames' keypoints plus a presence
flag. The forecast is constant-velocity extrapolation plus a learned correction whose last
layer starts at zero, so a fresh encoder forecasts by constant velocity.

The forecast becomes prompt tokens the way a user's prompt would: box corners and points
through SAM 2's own (frozen) prompt encoder, plus a learnable embedding per keypoint type.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

KEYPOINTS = ("centroid", "box_top_left", "box_bottom_right", "q_tl", "q_tr", "q_bl", "q_br")
# SAM prompt labels: 1 positive click, 2 / 3 box corners.
KEYPOINT_LABELS = (1, 2, 3, 1, 1, 1, 1)


@functools.lru_cache(maxsize=16)
def cell_centres(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel centres along one axis, normalised: (arange(size) + 0.5) / size, [size].

    Made once per size (not per frame); an ordinary tensor even when first made under
    inference mode, so training can use it too. Not to be written to.
    """
    with torch.inference_mode(False):
        return (torch.arange(size, device=device, dtype=dtype) + 0.5) / size


@functools.lru_cache(maxsize=16)
def _box_constants(
    size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`mask_keypoints`' constants for square masks of `size`: pixel centres and their
    negatives [2, 1, size], the sign [2, 1] and the half-pixel offset [2, 1] that turn
    (min, min of negatives) into (box start, box end)."""
    with torch.inference_mode(False):
        c = cell_centres(size, device, torch.float32)
        half = 0.5 / size
        signed = torch.stack([c, -c])[:, None]
        sign = torch.tensor([[1.0], [-1.0]], device=device)
        offset = torch.tensor([[-half], [half]], device=device)
    return signed, sign, offset


def mask_keypoints(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints of masks `logits > 0` [N, 1, s, s] -> ([N, K, 2] in [0, 1], present [N]).

    Absent objects get zeros. No gradient: keypoints of past predictions are inputs.
    Square masks (SAM 2's). Everything is read from the masks' row and column sums and
    one product per quadrant split (`halves @ m @ halves^T`), not from [N, 4, s, s] maps:
    the sums are of pixel centres (multiples of 1 / 2s), so they are exact in float32 at
    SAM 2's mask sizes up to 128 (a 512 px model) in any order.
    """
    n, _, h, w = logits.shape
    if h != w:
        raise ValueError(f"mask_keypoints takes square masks (SAM 2's), got {h} x {w}")
    with torch.no_grad():
        m = (logits[:, 0] > 0).to(torch.float32)  # [N, s, s]
        c = cell_centres(w, m.device, torch.float32)
        counts = torch.stack([m.sum(1), m.sum(2)], 1)  # [N, 2, s]: per column (x), per row (y)
        area = counts[:, 0].sum(1)
        present = area > 0
        centroid = (counts @ c) / area.clamp(min=1)[:, None]  # [N, 2]: (cx, cy)
        # the box from the occupied columns and rows: (min, min of negatives) of their
        # centres -> (start, end), each half a pixel out
        signed, sign, offset = _box_constants(w, m.device)
        occupied = (counts > 0)[:, None]  # [N, 1, 2, s]
        extremes = torch.where(occupied, signed, float("inf")).amin(-1)  # [N, 2, 2]
        box = extremes * sign + offset  # [N, 2, 2]: (x0, y0), (x1, y1)
        # the four quadrants around the centroid: before / after it along each axis
        before = c < centroid[:, :, None]  # [N, 2, s]
        halves = torch.stack([before, ~before], 2).to(torch.float32)  # [N, 2, 2, s]
        weighted = torch.cat([halves, halves * c], 2)  # [N, 2 axes, 4, s]
        # p[a, b]: sum over the pixels of row half a, column half b of (1, x) x (1, y)
        p = weighted[:, 1] @ m @ weighted[:, 0].transpose(1, 2)  # [N, 4, 4]
        aq = p[:, :2, :2].reshape(n, 4, 1)  # tl, tr, bl, br
        sums = torch.stack([p[:, :2, 2:], p[:, 2:, :2]], -1).view(n, 4, 2)
        q = torch.where(aq > 0, sums / aq.clamp(min=1), centroid[:, None])
        kp = torch.cat([centroid[:, None], box, q], 1)
        kp = torch.where(present[:, None, None], kp, 0.0)
    return kp, present


def hold_last_visible(traj: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """[N, L, K, 2] with each absent frame's keypoints replaced by those of the object's
    last present frame before it (frames before any present one keep theirs: zeros).

    An empty mask has no keypoints: without this, its zeros would read as the object
    standing in the top-left corner, and a forecast after a loss would extrapolate there.
    """
    steps, unseen = _history_steps(traj.shape[1], traj.device)
    # a present frame marks its step, an absent one its step - L (below every present
    # mark), so the running maximum is the last present frame, or (before any) the frame
    # itself - L; modulo L, the frame whose keypoints each frame takes
    marks = torch.where(present, steps, unseen)
    source = marks.cummax(1).values.remainder(traj.shape[1])  # [N, L]
    return traj.gather(1, source[:, :, None, None].expand_as(traj))


@functools.lru_cache(maxsize=8)
def _history_steps(length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`hold_last_visible`'s marks: (0 .. L - 1, -L .. -1), made once per length."""
    with torch.inference_mode(False):
        steps = torch.arange(length, device=device)
        return steps, steps - length


def constant_velocity(traj: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Extrapolate one step from the last two frames of [N, L, K, 2] (or hold the last).

    Frames must be consecutive in processing order; where the object was absent in the
    second-to-last frame, the last position is held.
    """
    last = traj[:, -1]
    if traj.shape[1] < 2:
        return last
    both = present[:, -2:].all(1)[:, None, None]
    return torch.where(both, 2 * last - traj[:, -2], last)


class SparseMotionEncoder(nn.Module):
    """Trajectory [N, L, K, 2] + presence [N, L] -> forecast keypoints and prompt tokens.

    `tokens` [N, num_tokens, D] are residuals for SAM 2's prompt tokens (zero when fresh or
    when the object has no present frame in its history).

    `hold_last_visible`: an absent frame's keypoints are the last visible ones (see
    `hold_last_visible`), so after a loss the forecast stays where the object was last
    seen; False keeps an empty mask's zeros (the forecast then heads for the top-left
    corner), for the ablation.
    """

    def __init__(
        self,
        prompt_dim: int,
        history: int = 4,
        hidden: int = 128,
        num_tokens: int = 2,
        hold_last_visible: bool = True,
    ):
        super().__init__()
        k = len(KEYPOINTS)
        self.history = history
        self.hold_last_visible = hold_last_visible
        self.num_tokens = num_tokens
        self.correction = nn.Sequential(
            nn.Linear(history * (k * 2 + 1), hidden), nn.GELU(), nn.Linear(hidden, k * 2)
        )
        self.motion_embed = nn.Parameter(torch.zeros(k, prompt_dim))
        self.to_tokens = nn.Sequential(
            nn.Linear(k * prompt_dim, hidden), nn.GELU(), nn.Linear(hidden, num_tokens * prompt_dim)
        )
        for last in (self.correction[-1], self.to_tokens[-1]):
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.register_buffer("labels", torch.tensor(KEYPOINT_LABELS), persistent=False)

    def forecast(self, traj: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Keypoints in the current frame [N, K, 2], normalised."""
        n = traj.shape[0]
        if self.hold_last_visible:
            traj = hold_last_visible(traj, present)
        rel = (traj - traj[:, -1:]) * present[:, :, None, None]
        feats = torch.cat([rel.flatten(1), present.float()], 1)
        delta = self.correction(feats).view(n, -1, 2)
        return constant_velocity(traj, present) + delta

    def forward(
        self,
        traj: torch.Tensor,
        present: torch.Tensor,
        prompt_encoder: nn.Module,
        image_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(forecast [N, K, 2] normalised, tokens [N, num_tokens, D])."""
        n = traj.shape[0]
        forecast = self.forecast(traj, present)
        # SAM 2's prompt encoder embeds pixel coordinates at the model's image size; a
        # forecast may leave the frame (an object exiting), which the embedding accepts.
        coords = forecast * image_size - 0.5
        emb = embed_points(prompt_encoder, coords, self.labels)
        tokens = self.to_tokens((emb + self.motion_embed).flatten(1))
        valid = present.any(1).to(tokens.dtype)[:, None]
        return forecast, (tokens * valid).view(n, self.num_tokens, -1)


def embed_points(
    prompt_encoder: nn.Module, coords: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """SAM 2's `prompt_encoder._embed_points(coords, labels, pad=False)` for labels that
    are all clicks or box corners (0-3), as ours are: the position encoding plus each
    label's embedding, one addition per element as there (so equal bit for bit), in a few
    operations instead of its chain of masked `where`s over every label. The coordinates
    are normalised in one division, not one copy and division per axis as
    `forward_with_coords` does (the same values).

    coords [N, K, 2] in pixels, labels [K] -> [N, K, D].
    """
    h, w = prompt_encoder.input_image_size
    normalised = (coords + 0.5) / coords.new_tensor([w, h])
    pe = prompt_encoder.pe_layer._pe_encoding(normalised.float())
    table = torch.cat([e.weight for e in prompt_encoder.point_embeddings])  # [4, D]
    return pe + table[labels]


def forecast_heatmap(
    forecast: torch.Tensor,
    size: int,
    sharpness: float = 1.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft box of the forecast box corners, [N, 1, size, size] in [0, 1], times `weight`
    [N] when given (applied to one axis' profile, not to the whole map).

    Differentiable in the forecast, so the dense branch can carry the sparse forecast into
    the dense prompt and train it. `sharpness` is the edge width in pixels.
    """
    c = cell_centres(size, forecast.device, forecast.dtype)
    s = size / sharpness
    corners = forecast[:, 1:3, :, None]  # [N, (start, end), (x, y), 1]
    # the x and y profiles at once: [N, 2, size]
    f = torch.sigmoid((c - corners[:, 0]) * s) * torch.sigmoid((corners[:, 1] - c) * s)
    fy = f[:, 1, :, None]
    if weight is not None:
        fy = fy * weight[:, None, None].to(fy.dtype)
    return (fy * f[:, 0, None, :])[:, None]
