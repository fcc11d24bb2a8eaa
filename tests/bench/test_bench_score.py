"""The scoring benchmark runs end to end (tiny sizes: this checks the command, not speed).

Its reference (vos-benchmark) is installed from PyPI into a cache folder; without network the
tiny run scores with our CLI only and says so, so these tests never need the network.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from mosam_train.bench import score as bench


def _last_json(capsys) -> tuple[dict, str]:
    out = capsys.readouterr().out
    return json.loads(out.strip().splitlines()[-1]), out


def test_tiny_bench_scores_with_both_evaluators_or_says_the_reference_is_missing(capsys):
    assert bench.main(["--tiny"]) == 0
    result, out = _last_json(capsys)
    assert (result["videos"], result["frames"], result["objects"]) == (3, 6, 2)
    assert 0 < result["ours"]["JF"] < 100  # the perturbed predictions are neither perfect nor void
    assert result["ours"]["score_s"] > 0 and result["ours"]["process_s"] > 0
    if isinstance(result["reference"], str):  # no network here: recorded, not failed
        assert result["reference"].startswith("unavailable: ")
        return
    assert result["agree_to_decimals"] == 3
    for k in ("J", "F", "JF"):
        assert abs(result["reference"][k] - result["ours"][k]) < 1e-9
    assert result["ratio_score_s"] > 0 and "ratio ours / vos-benchmark" in out
    assert out.count("video00") == 3  # one difference row per video


def test_without_the_reference_tiny_scores_ours_and_full_fails_with_the_fix(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip cannot reach any index, as offline
    empty = tmp_path / "no-reference"
    assert bench.main(["--tiny", "--reference-dir", str(empty)]) == 0
    result, _ = _last_json(capsys)
    assert result["reference"].startswith("unavailable: vos-benchmark")
    assert 0 < result["ours"]["JF"] < 100
    work = tmp_path / "work"
    assert bench.main(["--reference-dir", str(empty), "--workdir", str(work)]) == 1
    out = capsys.readouterr().out
    assert "error" in out and "Fix:" in out and "pip install --no-deps --target" in out
    assert not work.exists()  # it stops before writing the full set


def test_set_has_every_object_in_the_first_two_frames_and_perturbed_predictions(tmp_path):
    bench.write_set(tmp_path, videos=2, frames=5, objects=3, size=(48, 96))
    gt = sorted((tmp_path / "DAVIS" / "Annotations" / "480p").glob("*/*.png"))
    pred = sorted((tmp_path / "pred").glob("*/*.png"))
    assert len(gt) == len(pred) == 10
    labels = {p.relative_to(p.parents[1]): np.array(Image.open(p)) for p in gt}
    for name, label in labels.items():
        assert Image.open(tmp_path / "DAVIS" / "Annotations" / "480p" / name).mode == "P"
        if name.stem in ("00000", "00001"):
            assert set(np.unique(label)) == {0, 1, 2, 3}
    assert any(
        not np.array_equal(np.array(Image.open(tmp_path / "pred" / n)), lbl)
        for n, lbl in labels.items()
    )
