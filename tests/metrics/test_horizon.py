"""The tracking-horizon diagnostic on hand-made masks: J k frames after the first, only
over objects visible on every frame so far."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mosam_train.metrics.horizon import main, visible_run_j


def _png(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(label.astype(np.uint8), mode="L").convert("P")
    im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    im.save(path)


def test_visible_run_j_stops_at_the_first_absence():
    gt = np.zeros((6, 4, 4), bool)
    gt[:, :2, :2] = True
    gt[3] = False  # hidden on frame 3: frames 3 and later are not counted
    pred = gt.copy()
    pred[1, 0, 0] = False  # J 3/4 on frame 1
    pred[4] = True
    assert visible_run_j(gt, pred, (1, 2, 3, 5)) == {1: 0.75, 2: 1.0}
    always = np.ones((3, 2, 2), bool)
    assert visible_run_j(always, ~always, (1, 2, 5)) == {1: 0.0, 2: 0.0}


def test_cli_on_a_davis_folder(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for t in range(4):
        lab = np.zeros((8, 8), np.uint8)
        lab[:4, :4] = 1  # object 1: always visible
        if t != 2:
            lab[4:, 4:] = 2  # object 2: hidden on frame 2
        _png(gt / "v" / f"{t:05d}.png", lab)
        out = lab.copy()
        if t >= 1:
            out[:4, :2] = 0  # object 1 predicted half from frame 1: J 0.5
        _png(pred / "v" / f"{t:05d}.png", out)
    _png(gt / "w" / "00000.png", np.ones((8, 8), np.uint8))  # no prediction: not read
    main([str(gt), str(pred), "--frames", "1,3"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["videos"] == 1
    assert result["J_at"]["1"] == {"J": pytest.approx(0.75), "objects": 2}
    assert result["J_at"]["3"] == {"J": pytest.approx(0.5), "objects": 1}
    with pytest.raises(SystemExit, match="no prediction folder"):
        main([str(gt), str(tmp_path / "none")])
    with pytest.raises(SystemExit, match="frame offsets >= 1"):
        main([str(gt), str(pred), "--frames", "0"])
