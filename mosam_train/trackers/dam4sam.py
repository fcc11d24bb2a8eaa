"""`tracker=dam4sam`: DAM4SAM's distractor-aware memory (Videnović et al., arXiv
2411.17576), per object, on the streaming engine; reimplemented from the published
description (shared/PEERS.md section 3), no code copied.

Two memories per object, each part switchable on its own (all off: SAM 2's rule exactly):

- recent-appearance memory (RAM): slot 1 is t-1, or with `skip_empty` the most recent
  tracked frame whose chosen mask is non-empty; the further slots go back at stride
  `stride` from it (SAM 2's `((prev - 1) // r) * r` stepping: the multiples of r before the
  slot-1 frame, with `stride_rule`; off, every frame), skipping frames with an empty mask
  (`skip_empty`) and frames in the object's DRM (t-1 excepted: a DRM frame is never
  attended as such on the frame after it). RAM takes `window` (SAM 2's 6 past slots) minus
  the object's attended DRM frames, in SAM 2's temporal slots by rank.
- distractor-resolving memory (DRM, `drm`): the prompted frame plus at most `drm_cap` (3)
  tracked frames, the most recent admitted before t-1, attended with the prompted frames'
  temporal encoding (SAM 2's t_pos 0: no relative temporal encoding). Tracked frame t
  enters an object's DRM iff its chosen predicted IoU > `drm_iou` (0.8), its mask size is
  within `size_band` (±20 %) of the median size of the object's last `size_history` (10)
  non-empty frames of the last `size_window` (300), its mask is non-empty, t - (the last
  frame admitted, or prompted) > `drm_gap` (5), and (with `distractor_test`) SAM 2's
  alternative masks show a distractor (`distractor_ious` <= `anchor_iou`, 0.7).

Per object in its group's `MemoryBank.state`, reset per video: the size history, the last
admitted frame, the DRM frames (the `drm_cap + 1` most recent admitted, so that t-1's
exclusion still leaves `drm_cap`), and the admitted frames' memory entries (kept there, so
the bank is pruned to RAM's reach and the DRM costs at most `drm_cap + 1` entries).

Deviations from DAM4SAM's code: object pointers follow SAM 2's rule (the seam chooses
pointers per group, not per object, so DAM4SAM's "pointers only from frames with a
non-empty mask" is not applied); the mask sizes are counted at SAM 2's model resolution
(its high-resolution masks); a frame that left the DRM (older than `drm_cap + 1`
admissions) stays out of RAM, as in DAM4SAM where admitted frames become conditioning
frames; several objects per group, streaming with bounded memory (DAM4SAM tracks one
object on a whole loaded video). The distractor test labels connected components on the
host (OpenCV; torch has no such op), only for the objects that passed the cheap tests on
the device, so on most frames it moves nothing; the admission itself costs one host
synchronisation per tracked frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from mosam_train.inference.rules import MemoryBank, TrackerRule
from mosam_train.models.video_sam import Candidates, OutputDict, SpatialMemory
from mosam_train.trackers.boxes import box_iou

NEVER = -(10**9)  # a frame index before any frame ("never admitted", "no size yet")


@dataclass(frozen=True)
class DrmSettings:
    """DAM4SAM's DRM admission constants (defaults: its published ones, PEERS.md 3 (4))."""

    cap: int = 3
    iou: float = 0.8
    size_band: float = 0.2
    size_history: int = 10
    size_window: int = 300
    gap: int = 5
    anchor_iou: float = 0.7
    distractor_test: bool = True


def recent_memory(
    frame_idx: int,
    frames: list[int],
    pixels: torch.Tensor,
    in_drm: torch.Tensor,
    slots: torch.Tensor,
    stride: int,
    skip_empty: bool,
) -> torch.Tensor:
    """Each object's RAM for tracked frame `frame_idx` (module docstring): bool [C, N] over
    `frames` (tracked frames in memory, most recent first), from each frame's mask size
    `pixels` [C, N], whether it is in the object's DRM `in_drm` [C, N] and each object's
    number of RAM slots `slots` [N]. No host synchronisation."""
    f = torch.tensor(frames, device=pixels.device)[:, None]
    eligible = ~in_drm | (f == frame_idx - 1)  # t-1 is never attended as a DRM frame
    if skip_empty:
        eligible &= pixels >= 1
    first = eligible & (eligible.long().cumsum(0) == 1)  # slot 1
    first_frame = torch.where(first, f, NEVER).amax(0)  # [N]
    later = eligible & (f < first_frame) & (f % stride == 0)
    later &= later.long().cumsum(0) <= slots - 1
    return first | later


def distractor_ious(masks: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """DAM4SAM's distractor test: for each object's candidate masks [N, M, H, W] (logits,
    in where > 0) and its chosen one `choice` [N], the minimum over the alternatives of
    IoU(box(chosen), box(chosen ∪ largest connected component of (alternative minus
    chosen))) -> float64 [N] (1: no alternative adds anything). Low: an alternative mask
    reaches a separate region, a distractor. Boxes span the pixels in (a one-pixel mask
    has area 1); components are 8-connected, labelled on the host (OpenCV)."""
    inside = (masks > 0).cpu().numpy()
    chosen_at = choice.tolist()
    out = []
    for obj, c in enumerate(chosen_at):
        chosen = inside[obj, c]
        boxes = [_box(chosen)]
        for alt in range(inside.shape[1]):
            if alt == c:
                continue
            extra = (inside[obj, alt] & ~chosen).astype(np.uint8)
            count, labels, stats, _ = cv2.connectedComponentsWithStats(extra, connectivity=8)
            union = chosen
            if count > 1:
                largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
                union = chosen | (labels == largest)
            boxes.append(_box(union))
        b = torch.tensor(boxes, dtype=torch.float64)
        ious = box_iou(b[:1], b[None, 1:])[0]
        out.append(float(ious.min()) if len(ious) else 1.0)
    return torch.tensor(out, dtype=torch.float64, device=masks.device)


def _box(mask: np.ndarray) -> list[int]:
    """xyxy spanning the pixels in (x2, y2 one past the last), [0, 0, 0, 0] if empty."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return [x, y, x + w, y + h]


class Dam4Sam(TrackerRule):
    """stride_rule, stride: RAM at stride `stride` (off: every frame); skip_empty: RAM skips
    frames with an empty mask; window: SAM 2's past memory slots (RAM + DRM); drm: the
    distractor-resolving memory on; drm_cap ... anchor_iou: its admission constants
    (`DrmSettings`); distractor_test: admission also needs a distractor among SAM 2's
    alternative masks (needs three candidates; off: DAM4SAM's "reliable-only" ablation)."""

    def __init__(
        self,
        stride_rule: bool = True,
        stride: int = 5,
        skip_empty: bool = True,
        window: int = 6,
        drm: bool = True,
        drm_cap: int = 3,
        drm_iou: float = 0.8,
        size_band: float = 0.2,
        size_history: int = 10,
        size_window: int = 300,
        drm_gap: int = 5,
        anchor_iou: float = 0.7,
        distractor_test: bool = True,
    ) -> None:
        for name, value, low in (
            ("stride", stride, 1),
            ("window", window, 1),
            ("drm_cap", drm_cap, 0),
            ("size_history", size_history, 1),
            ("size_window", size_window, 1),
        ):
            if int(value) < low:
                raise ValueError(
                    f"tracker.{name}={value}: must be >= {low} (configs/tracker/dam4sam.yaml)."
                )
        if drm and int(drm_cap) >= int(window):
            raise ValueError(
                f"tracker.drm_cap={drm_cap} leaves no recent-appearance slot of "
                f"tracker.window={window}. Fix: drm_cap < window (DAM4SAM: 3 of 6)."
            )
        self.stride = int(stride) if stride_rule else 1
        self.skip_empty = bool(skip_empty)
        self.window = int(window)
        self.drm = None
        if drm:
            self.drm = DrmSettings(
                int(drm_cap),
                float(drm_iou),
                float(size_band),
                int(size_history),
                int(size_window),
                int(drm_gap),
                float(anchor_iou),
                bool(distractor_test),
            )
        self.needs_candidates = self.drm is not None and self.drm.distractor_test
        self.selects = stride_rule or self.skip_empty or self.drm is not None

    # ------------------------------------------------------------------ state
    def initial_state(self, num_objects: int, device: torch.device) -> dict[str, Any]:
        if self.drm is None:
            return {}
        n, h = num_objects, self.drm.size_history
        return {
            "drm_frames": torch.full((n, self.drm.cap + 1), NEVER, device=device),
            "last_added": torch.full((n,), NEVER, device=device),
            "sizes": torch.full((n, h), torch.nan, dtype=torch.float64, device=device),
            "size_frames": torch.full((n, h), NEVER, device=device),
            "drm_entries": {},  # frame -> memory entry, for the frames in "drm_frames"
        }

    # ------------------------------------------------------------------ DRM admission
    def admissible(
        self, state: dict[str, Any], frame_idx: int, iou: torch.Tensor, pixels: torch.Tensor
    ) -> torch.Tensor:
        """DAM4SAM's reliability tests of tracked frame `frame_idx` per object: bool [N]
        from its chosen predicted IoU [N] and mask size [N] against the size history."""
        d = self.drm
        assert d is not None
        recent = frame_idx - state["size_frames"] < d.size_window
        median = state["sizes"].where(recent, torch.nan).nanquantile(0.5, dim=1)
        ratio = pixels.double() / median  # NaN without history: fails
        return (
            (iou > d.iou)
            & (ratio >= 1 - d.size_band)
            & (ratio <= 1 + d.size_band)
            & (pixels >= 1)
            & (frame_idx - state["last_added"] > d.gap)
        )

    def _admit(
        self, bank: MemoryBank, frame_idx: int, out: dict[str, Any], pixels: torch.Tensor
    ) -> torch.Tensor:
        """Which objects take tracked frame `frame_idx` into their DRM: bool [N]."""
        assert self.drm is not None
        if "choice" in out:
            iou = Candidates.take(out["candidates"].ious, out["choice"])
        else:  # SAM 2's choice: its highest predicted IoU (one-mask model: its only)
            iou = out["ious"].amax(-1)
        admit = self.admissible(bank.state, frame_idx, iou, pixels)
        if self.drm.distractor_test and bool(admit.any()):
            rows = admit.nonzero()[:, 0]
            cands = out["candidates"]
            min_iou = distractor_ious(cands.high_res_masks[rows], out["choice"][rows])
            admit[rows] = min_iou <= self.drm.anchor_iou
        return admit

    def _record_size(self, state: dict[str, Any], frame_idx: int, pixels: torch.Tensor) -> None:
        """Push each object's non-empty mask size into its history (most recent first)."""
        seen = (pixels >= 1)[:, None]
        sizes, frames = state["sizes"], state["size_frames"]
        now = torch.full_like(frames[:, :1], frame_idx)
        state["sizes"] = torch.where(
            seen, torch.cat([pixels.double()[:, None], sizes[:, :-1]], 1), sizes
        )
        state["size_frames"] = torch.where(seen, torch.cat([now, frames[:, :-1]], 1), frames)

    def remember(
        self,
        bank: MemoryBank,
        frame_idx: int,
        entry: dict[str, Any],
        out: dict[str, Any],
        *,
        prompted: bool,
        flow: torch.Tensor | None = None,
        truth: torch.Tensor | None = None,
    ) -> None:
        pixels = (out["pred_masks_high_res"] > 0).flatten(1).sum(1)
        admit = torch.zeros_like(pixels, dtype=torch.bool)
        if self.drm is not None:
            state = bank.state
            if prompted:
                state["last_added"] = torch.full_like(state["last_added"], frame_idx)
            else:
                admit = self._admit(bank, frame_idx, out, pixels)
            self._record_size(state, frame_idx, pixels)
        entry = {**entry, "pixels": pixels, "in_drm": admit}
        if self.drm is not None and not prompted and bool(admit.any()):
            self._add_to_drm(bank.state, frame_idx, entry, admit)
        super().remember(bank, frame_idx, entry, out, prompted=prompted, flow=flow)

    def _add_to_drm(
        self, state: dict[str, Any], frame_idx: int, entry: dict[str, Any], admit: torch.Tensor
    ) -> None:
        frames = state["drm_frames"]
        pushed = torch.cat([torch.full_like(frames[:, :1], frame_idx), frames[:, :-1]], 1)
        state["drm_frames"] = torch.where(admit[:, None], pushed, frames)
        state["last_added"] = torch.where(admit, frame_idx, state["last_added"])
        held = set(state["drm_frames"].flatten().tolist())
        entries = {t: e for t, e in state["drm_entries"].items() if t in held}
        entries[frame_idx] = entry
        state["drm_entries"] = entries

    # ------------------------------------------------------------------ memory
    def attended_drm(self, state: dict[str, Any], frame_idx: int) -> torch.Tensor:
        """Each object's attended DRM frames for tracked frame `frame_idx`: long [N, cap],
        most recent first, NEVER where none (admitted before t-1, the `cap` most recent)."""
        assert self.drm is not None
        frames = state["drm_frames"]
        ok = (frames >= 0) & (frames < frame_idx - 1)
        order = torch.where(ok, frames, NEVER).sort(1, descending=True).values
        return order[:, : self.drm.cap]

    def _ram(self, bank: MemoryBank, frame_idx: int) -> tuple[list[int], torch.Tensor | None]:
        """Tracked frames in memory before `frame_idx` (most recent first) and each object's
        RAM over them [C, N] (None: no such frame)."""
        pool = bank.non_cond
        frames = sorted(
            (t for t, e in pool.items() if t < frame_idx and e.get("maskmem_features") is not None),
            reverse=True,
        )
        if not frames:
            return frames, None
        entries = [pool[t] for t in frames]
        pixels = torch.stack([e["pixels"] for e in entries])
        in_drm = torch.stack([e["in_drm"] for e in entries])
        slots = torch.full_like(pixels[0], self.window)
        if self.drm is not None:
            slots = slots - (self.attended_drm(bank.state, frame_idx) >= 0).sum(1)
        return frames, recent_memory(
            frame_idx, frames, pixels, in_drm, slots, self.stride, self.skip_empty
        )

    def select(self, bank: MemoryBank, frame_idx: int, memory: OutputDict) -> SpatialMemory | None:
        if not self.selects:
            return None
        frames, in_ram = self._ram(bank, frame_idx)
        if in_ram is not None:  # only the frames some object keeps are gathered
            kept = in_ram.any(1).tolist()
            frames = [t for t, k in zip(frames, kept, strict=True) if k]
            in_ram = in_ram[torch.tensor(kept, device=in_ram.device)] if frames else None
        entries = [bank.non_cond[t] for t in frames]
        rows, slots = [], []
        if in_ram is not None:  # RAM rows, most recent first, slots by rank
            c = len(frames)
            position = torch.arange(c, device=in_ram.device)[:, None]
            order = torch.where(in_ram, position, position + c).argsort(0)
            rank = torch.arange(1, c + 1, device=in_ram.device)[:, None].expand_as(order)
            rows.append((order, in_ram.gather(0, order)))
            slots.append(rank)
        if self.drm is not None:  # DRM rows, in the prompted frames' slot
            attended = self.attended_drm(bank.state, frame_idx).T  # [cap, N]
            held = sorted(set(attended[attended >= 0].tolist()))
            if held:
                known = torch.tensor(held, device=attended.device)
                where = (attended[..., None] == known).long().argmax(-1) + len(entries)
                entries += [bank.state["drm_entries"][t] for t in held]
                rows.append((where, attended >= 0))
                slots.append(torch.zeros_like(where))
        if not rows:
            return SpatialMemory([])
        index = torch.cat([r[0] for r in rows])
        valid = torch.cat([r[1] for r in rows])
        used = valid.any(1)
        index, valid, slot = index[used], valid[used], torch.cat(slots)[used]
        if not len(index):
            return SpatialMemory([])
        return SpatialMemory(entries, index, slot, None if bool(valid.all()) else valid)

    def horizon(
        self, bank: MemoryBank, next_frame: int, model_horizon: tuple[int, int]
    ) -> tuple[int, int]:
        """RAM reaches back as far as its oldest frame for `next_frame`: later frames' RAM
        starts no earlier (mask sizes and DRM flags are final once a frame is remembered,
        and the DRM only grows), and the DRM's entries are kept in the rule's state."""
        if not self.selects:
            return model_horizon
        frames, in_ram = self._ram(bank, next_frame)
        oldest_mem, oldest_ptr = model_horizon
        if in_ram is not None and bool(in_ram.any()):
            oldest_mem = min(oldest_mem, frames[int(in_ram.any(1).nonzero().max())])
        return oldest_mem, oldest_ptr


RULE = Dam4Sam
