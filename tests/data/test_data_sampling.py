"""Clip sampler and object chooser: pure, deterministic, within their constraints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mosam_train.data.sampling import choose_objects, reemerging, sample_clip


def _gens(seed: int):
    return [np.random.default_rng(seed), torch.Generator().manual_seed(seed)]


@pytest.mark.parametrize("kind", [0, 1], ids=["numpy", "torch"])
def test_same_generator_state_same_clip(kind):
    assert sample_clip(50, range(50), 8, 3, _gens(7)[kind], 0.5) == sample_clip(
        50, range(50), 8, 3, _gens(7)[kind], 0.5
    )
    g1, g2 = _gens(1)[kind], _gens(1)[kind]
    seq1 = [sample_clip(50, range(50), 8, 3, g1) for _ in range(20)]
    seq2 = [sample_clip(50, range(50), 8, 3, g2) for _ in range(20)]
    assert seq1 == seq2 and len({tuple(c) for c in seq1}) > 10  # deterministic, not constant


def test_steps_and_starts_follow_annotated_order():
    annotated = list(range(0, 60, 5))  # sparse: every 5th frame
    rng = np.random.default_rng(0)
    steps, starts, ends = set(), set(), set()
    for _ in range(400):
        clip = sample_clip(60, annotated, 4, 3, rng)
        pos = [annotated.index(t) for t in clip]
        assert len(clip) == 4
        steps |= set(np.diff(pos).tolist())
        starts.add(pos[0])
        ends.add(pos[-1])
    assert steps == {1, 2, 3}
    assert min(starts) == 0 and max(ends) == len(annotated) - 1  # spans the whole video


def test_uniform_start_with_unit_skip():
    rng = np.random.default_rng(0)
    starts = [sample_clip(10, range(10), 4, 1, rng)[0] for _ in range(2000)]
    counts = np.bincount(starts, minlength=7)
    assert len(counts) == 7 and counts.min() > 200  # 7 feasible starts, each ~286 times


def test_skip_clamped_to_fit():
    rng = np.random.default_rng(0)
    for _ in range(200):
        clip = sample_clip(10, range(10), 4, 100, rng)  # at most (10 - 1) // 3 = 3 per step
        assert np.all(np.diff(clip) >= 1) and np.all(np.diff(clip) <= 3)


def test_short_video_is_padded_with_last_frame():
    assert sample_clip(3, [0, 1, 2], 5, 3, np.random.default_rng(0)) == [0, 1, 2, 2, 2]
    assert sample_clip(9, [4], 3, 2, np.random.default_rng(0)) == [4, 4, 4]


def test_reverse():
    clip = sample_clip(30, range(30), 6, 2, np.random.default_rng(0), reverse_prob=1.0)
    assert np.all(np.diff(clip) < 0)


def test_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="no annotated"):
        sample_clip(5, [], 3, 1, rng)
    with pytest.raises(ValueError, match="outside"):
        sample_clip(5, [0, 5], 2, 1, rng)
    with pytest.raises(ValueError):
        sample_clip(5, [0, 1], 0, 1, rng)


def test_choose_objects():
    assert choose_objects([3, 9], 3, np.random.default_rng(0)) == [3, 9]
    seen = set()
    for kind in (0, 1):
        g1, g2 = _gens(5)[kind], _gens(5)[kind]
        for _ in range(100):
            a = choose_objects([1, 4, 6, 9], 2, g1)
            assert a == choose_objects([1, 4, 6, 9], 2, g2)
            assert len(a) == 2 and a == sorted(a) and set(a) <= {1, 4, 6, 9}
            seen.add(tuple(a))
    assert seen == set(itertools.combinations([1, 4, 6, 9], 2))  # every pair reachable


def test_choose_objects_keeps_one_included_object():
    for seed in range(20):
        chosen = choose_objects([1, 2, 3, 4, 5], 2, np.random.default_rng(seed), include=[4])
        assert 4 in chosen and len(chosen) == 2 and chosen == sorted(chosen)
    firsts = {
        tuple(choose_objects([1, 2, 3, 4, 5], 1, np.random.default_rng(s), include=[2, 5]))
        for s in range(40)
    }
    assert firsts == {(2,), (5,)}


def test_reemerging_needs_presence_first_then_absence_then_presence():
    presence = np.array(
        [[1, 1, 0, 1, 1], [1, 1, 0, 0, 0], [0, 1, 1, 0, 1], [1, 1, 1, 1, 0]], bool
    )  # frames x objects
    assert reemerging(presence).tolist() == [True, False, False, True, True]
