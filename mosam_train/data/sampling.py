"""Clip and object sampling as pure functions of their inputs and a seeded generator.

Pure so that a training sample is reproducible from (seed, epoch, index) alone, whatever
the worker count, and so the rules can be tested without a dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

Generator = torch.Generator | np.random.Generator


def _randint(gen: Generator, high: int) -> int:
    """Uniform integer in [0, high)."""
    if isinstance(gen, np.random.Generator):
        return int(gen.integers(high))
    return int(torch.randint(high, (1,), generator=gen).item())


def _random(gen: Generator) -> float:
    if isinstance(gen, np.random.Generator):
        return float(gen.random())
    return float(torch.rand(1, generator=gen).item())


def _permutation(gen: Generator, n: int) -> list[int]:
    if isinstance(gen, np.random.Generator):
        return [int(v) for v in gen.permutation(n)]
    return torch.randperm(n, generator=gen).tolist()


def sample_clip(
    num_frames: int,
    annotated: Sequence[int],
    clip_len: int,
    max_skip: int,
    generator: Generator,
    reverse_prob: float = 0.0,
) -> list[int]:
    """Frame indices of a training clip of `clip_len` annotated frames.

    Steps are counted in annotated-frame order (a step of 1 = the next annotated frame).
    Each of the `clip_len - 1` steps is drawn uniformly from 1..s, where
    s = min(max_skip, (A - 1) // (clip_len - 1)) for A annotated frames, so every draw
    fits; the start is then uniform among the starts that fit the drawn span. A video
    with fewer than `clip_len` annotated frames gives all of them in order, padded by
    repeating the last one. With probability `reverse_prob` the clip is played backwards.
    """
    if clip_len < 1 or max_skip < 1:
        raise ValueError(f"clip_len ({clip_len}) and max_skip ({max_skip}) must be >= 1")
    frames = sorted(set(annotated))
    if not frames:
        raise ValueError("no annotated frame to sample from")
    if frames[0] < 0 or frames[-1] >= num_frames:
        raise ValueError(f"annotated frames {frames[0]}..{frames[-1]} outside 0..{num_frames - 1}")
    n = len(frames)
    if n < clip_len:
        positions = list(range(n)) + [n - 1] * (clip_len - n)
    else:
        skip = min(max_skip, (n - 1) // (clip_len - 1)) if clip_len > 1 else 1
        steps = [1 + _randint(generator, skip) for _ in range(clip_len - 1)]
        start = _randint(generator, n - sum(steps))
        positions = [start]
        for step in steps:
            positions.append(positions[-1] + step)
    clip = [frames[p] for p in positions]
    if reverse_prob > 0 and _random(generator) < reverse_prob:
        clip.reverse()
    return clip


def choose_objects(
    present_in_first: Sequence[int],
    max_objects: int,
    generator: Generator,
    include: Sequence[int] = (),
) -> list[int]:
    """Up to `max_objects` of the given ids, uniformly without replacement, in input order.

    With `include` (a subset of the ids), one of them, drawn uniformly, is always among
    the chosen; the others are drawn uniformly from the rest.
    """
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    ids = list(present_in_first)
    if len(ids) <= max_objects:
        return ids
    if not include:
        keep = sorted(_permutation(generator, len(ids))[:max_objects])
        return [ids[k] for k in keep]
    first = list(include)[_randint(generator, len(include))]
    rest = [i for i in ids if i != first]
    others = {rest[k] for k in _permutation(generator, len(rest))[: max_objects - 1]}
    return [i for i in ids if i == first or i in others]


def reemerging(presence: np.ndarray) -> np.ndarray:
    """Which objects of a clip go through an absence and come back: present in its first
    frame, absent in a later one, present again after that. presence: bool [T, O] -> [O].

    These are the clips a memory rule and a visibility signal learn from (what to keep
    while the object is hidden, where to find it again).
    """
    seen = np.asarray(presence, dtype=bool)
    back = seen & np.logical_or.accumulate(~seen, axis=0)  # present after an absence
    return seen[0] & back.any(0)
