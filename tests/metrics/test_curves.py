"""The convergence rule of the shipped base, on hand-written csv logs."""

import csv

import pytest

from mosam_train.metrics import curves


def _log(run, version, rows):
    path = run / "csv" / f"version_{version}" / "metrics.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, ["step", "train/loss", "val/jf"])
        w.writeheader()
        for step, jf in rows:
            w.writerow({"step": step, "train/loss": 1.0})  # a training row: no val/jf
            w.writerow({"step": step, "val/jf": jf})


def test_a_resumed_run_reads_as_one_curve_and_later_logs_win(tmp_path):
    _log(tmp_path, 0, [(799, 10.0), (1599, 14.0)])
    _log(tmp_path, 1, [(1599, 14.5), (2399, 16.0)])  # resumed from step 1500
    assert curves.read_curve(tmp_path) == {799: 10.0, 1599: 14.5, 2399: 16.0}


def test_rise_is_the_latest_mean_minus_the_best_mean_a_window_earlier(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _log(a, 0, [(799, 10.0), (1599, 20.0), (2399, 20.4), (3199, 20.2)])
    _log(b, 0, [(799, 12.0), (1599, 22.0), (2399, 22.2), (3199, 22.6)])
    mean = curves.mean_curve([curves.read_curve(a), curves.read_curve(b)])
    assert mean == pytest.approx({799: 11.0, 1599: 21.0, 2399: 21.3, 3199: 21.4})
    assert curves.rise(mean, 800) == pytest.approx(0.1)  # 21.4 - max(11.0, 21.0, 21.3)
    assert curves.rise({799: 1.0}, 800) is None


def test_the_cli_says_when_the_mean_stopped_rising(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _log(a, 0, [(799, 10.0), (1599, 20.0)])
    _log(b, 0, [(799, 12.0), (1599, 22.0)])
    curves.main([str(a), str(b), "--plot", str(tmp_path / "c.png")])
    out = capsys.readouterr().out
    assert "| 1599 | 20.00 | 22.00 | 21.00 |" in out
    assert "not converged: the mean rose +10.00 over the last 800 steps" in out
    assert (tmp_path / "c.png").stat().st_size > 0
    _log(a := tmp_path / "c", 0, [(799, 10.0), (1599, 10.3)])
    curves.main([str(a)])
    assert "converged: the mean rose +0.30" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no csv/version_"):
        curves.main([str(tmp_path / "missing")])
