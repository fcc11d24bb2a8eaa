"""The method-table CLI: last validation of training runs, metrics.json of eval runs."""

import json

import pytest

from mosam_train.metrics.table import main, read_run


def train_run(path, rows):
    (path / "csv" / "version_0").mkdir(parents=True)
    keys = [
        "step",
        "train/loss",
        "val/jf",
        "val/occlusion/jf",
        "val/exit_reentry/jf",
        "val/distractor/jf",
    ]
    lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in rows]
    (path / "csv" / "version_0" / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_rows_are_mean_and_std_of_last_validations(tmp_path, capsys):
    for seed, last in enumerate([40.0, 44.0]):
        train_run(
            tmp_path / f"mosam_{seed}",
            [
                {"step": 1, "train/loss": 3.0},
                {"step": 2, "val/jf": 90.0, "val/occlusion/jf": 90.0},  # not the last
                {"step": 3, "train/loss": 2.0},
                {
                    "step": 4,
                    "val/jf": last,
                    "val/occlusion/jf": last - 10,
                    "val/exit_reentry/jf": last,
                    "val/distractor/jf": last + 1,
                },
            ],
        )
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "metrics.json").write_text(
        json.dumps(
            {
                "JF": 30.0,
                "tag/occlusion/JF": 20.0,
                "tag/exit_reentry/JF": 25.0,
                "tag/distractor/JF": 31.0,
            }
        )
    )
    main([f"SAM 2={tmp_path}/base", f"MoSAM={tmp_path}/mosam_*"])
    out = capsys.readouterr().out
    assert "| SAM 2 | 1 | 30.0 | 20.0 | 25.0 | 31.0 |" in out
    assert "| MoSAM | 2 | 42.0 ± 2.8 | 32.0 ± 2.8 | 42.0 ± 2.8 | 43.0 ± 2.8 |" in out


def test_a_run_without_validation_is_an_error(tmp_path):
    train_run(tmp_path / "r", [{"step": 1, "train/loss": 1.0}])
    with pytest.raises(ValueError, match="no validation row"):
        read_run(tmp_path / "r")
    with pytest.raises(FileNotFoundError, match=r"metrics\.json"):
        read_run(tmp_path)
