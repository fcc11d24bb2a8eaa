"""Pictures of a result: values behind them, and files that open."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from mosam_train.metrics.jf import ObjectScore
from mosam_train.metrics.plots import (
    overlay_frames,
    per_frame_j,
    plot_j_over_time,
    plot_video_scores,
    video_scores,
    write_overlay,
)
from mosam_train.palette import voc_palette


def _row(video, oid, j, f, tags=()):
    return ObjectScore(video, oid, j, 1.0, 0.0, f, 1.0, 0.0, num_frames=3, tags=tags)


def test_video_scores_average_objects_of_a_video():
    rows = [_row("a", 1, 0.8, 0.6), _row("a", 2, 0.4, 0.2), _row("b", 1, 1.0, 1.0)]
    assert video_scores(rows) == pytest.approx({"a": 50.0, "b": 100.0})  # (70 + 30) / 2


def test_per_frame_j_hand_values():
    gt = {0: np.zeros((1, 4, 4), bool), 1: np.zeros((1, 4, 4), bool)}
    gt[0][0, :2, :2] = True  # 4 px
    pred = {0: np.zeros((1, 4, 4), bool), 1: np.zeros((1, 4, 4), bool)}
    pred[0][0, :2, :1] = True  # 2 px inside: J = 2/4
    assert per_frame_j(gt, pred, [7]) == {7: [0.5, 1.0]}  # frame 1: both empty -> 1


def test_plots_write_images(tmp_path):
    rows = [_row(f"v{i}", 1, i / 10, i / 10, tags=("occlusion",) if i % 2 else ()) for i in range(6)]  # fmt: skip
    bar = plot_video_scores(rows, tmp_path / "jf.png")
    curve = plot_j_over_time(
        [0, 1, 2], {1: [1.0, 0.2, 0.9]}, tmp_path / "sub" / "j.png", "v0",
        present={1: [True, False, True]},
    )  # fmt: skip
    for p in (bar, curve):
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300


def test_overlay_gif_and_mp4(tmp_path):
    frames = [np.full((16, 24, 3), 100, np.uint8) for _ in range(3)]
    labels = [np.zeros((16, 24), np.uint8) for _ in range(3)]
    for t, lbl in enumerate(labels):
        lbl[4:8, 4 + t : 8 + t] = 1
    blended = overlay_frames(frames, labels)
    red = np.asarray(voc_palette()[3:6])  # colour of label 1
    assert (blended[0][5, 5] == np.round(0.5 * 100 + 0.5 * red)).all()
    assert (blended[0][0, 0] == 100).all()
    gif = write_overlay(frames, labels, tmp_path / "o.gif")
    with Image.open(gif) as im:
        assert im.n_frames == 3
    mp4 = write_overlay(frames, labels, tmp_path / "o.mp4", fps=5)
    cap = cv2.VideoCapture(str(mp4))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    with pytest.raises(ValueError, match=r"gif or \.mp4"):
        write_overlay(frames, labels, tmp_path / "o.avi")
