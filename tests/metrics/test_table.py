"""The method-table CLI: last validation of training runs, metrics.json of eval runs,
committed per-object CSVs, and paired comparisons of rows."""

import csv
import json
import math

import numpy as np
import pytest

from mosam_train.metrics.jf import ROW_FIELDS, ObjectScore
from mosam_train.metrics.table import main, paired_difference, read_run, table


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


def write_rows(path, rows) -> None:
    """A committed-style per-object CSV, as eval.py writes per_object.csv."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        writer.writeheader()
        writer.writerows(r.to_row() for r in rows)


def objects(jf_of, seed=0):
    """Ten occlusion objects (hidden once, half of them re-detected 2 frames late) and ten
    untagged ones; J = F = jf_of(object index) / 100."""
    out = []
    for i in range(20):
        jf = jf_of(i) / 100
        tagged = i < 10
        out.append(
            ObjectScore(
                f"v{i // 2}", i % 2 + 1, jf, 0, 0, jf, 0, 0, 30,
                ("occlusion",) if tagged else (),
                j_visible=jf,
                fp_absent=0.1 * seed if tagged else math.nan,
                latencies=(2,) if tagged and i % 2 else (),
                never_redetected=int(tagged and not i % 2),
            )
        )  # fmt: skip
    return out


def test_rows_from_committed_per_object_csvs(tmp_path, capsys):
    for seed, shift in enumerate((0.0, 2.0)):
        write_rows(tmp_path / "b" / f"seed{seed}.csv", objects(lambda i, s=shift: 40 + i + s, seed))
    main([f"base={tmp_path}/b/seed*.csv"])
    out = capsys.readouterr().out
    header, _, line = out.strip().splitlines()
    assert header == (
        "| model | runs | J&F | 95% CI | occlusion | J visible | FP absent % | latency | never % |"
    )
    cells = [c.strip() for c in line.strip("|").split("|")]
    # J&F 49.5 and 51.5 over the seeds; occlusion objects 0-9: 44.5 and 46.5
    assert cells[:3] == ["base", "2", "50.5 ± 1.4"]
    assert cells[4:] == ["45.5 ± 1.4", "50.5 ± 1.4", "5.0 ± 7.1", "16.0 ± 0.0", "50.0 ± 0.0"]
    # interval of the seed-averaged per-object J&F (40.5 + i + 1 for i in 0..19)
    low, high = (float(v) for v in cells[3].strip("[]").split(","))
    assert low < 50.5 < high and high - low < 11
    # eval run directories: their per_object.csv
    write_rows(tmp_path / "eval" / "per_object.csv", objects(lambda i: 40 + i))
    main([f"eval={tmp_path}/eval"])
    assert "| eval | 1 | 49.5 |" in capsys.readouterr().out


def test_old_per_object_csvs_without_diagnostics_still_read(tmp_path, capsys):
    old = [
        f
        for f in ROW_FIELDS
        if f not in ("j_visible", "fp_absent", "latencies", "never_redetected")
    ]
    path = tmp_path / "old.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(r.to_row() for r in objects(lambda i: 50.0))
    main([f"old={path}"])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "| model | runs | J&F | 95% CI | occlusion |"
    assert "| old | 1 | 50.0 | [50.0, 50.0] | 50.0 |" in out


def test_paired_difference_over_tagged_objects_averaged_over_seeds(tmp_path, capsys):
    def delta(seed):  # A - B: +1 and +3 on occlusion objects (mean +2), -10 on the others
        return lambda i: 40 + i + ((1 + 2 * seed) if i < 10 else -10)

    for seed in (0, 1):
        write_rows(tmp_path / "a" / f"seed{seed}.csv", objects(delta(seed)))
        write_rows(tmp_path / "b" / f"seed{seed}.csv", objects(lambda i: 40 + i))
    rows = {k: [read_run(p) for p in sorted((tmp_path / k).glob("*.csv"))] for k in "ab"}
    p = paired_difference(rows["a"], rows["b"], tags=["occlusion"])
    assert (p.difference, p.low, p.high, p.num_objects) == pytest.approx((2.0, 2.0, 2.0, 10))
    every = paired_difference(rows["a"], rows["b"])
    assert every.difference == pytest.approx((10 * 2 - 10 * 10) / 20)
    assert every.low < every.difference < every.high and every.num_objects == 20
    # per-object noise: the interval is around the known mean and reproducible
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 3, 20)
    write_rows(tmp_path / "c" / "seed0.csv", objects(lambda i: 42 + i + noise[i]))
    c = [read_run(tmp_path / "c" / "seed0.csv")]
    q = paired_difference(c, rows["b"], ["occlusion"])
    assert q.difference == pytest.approx(2 + noise[:10].mean())
    assert q.low < q.difference < q.high
    assert paired_difference(c, rows["b"], ["occlusion"]) == q

    main([f"A={tmp_path}/a/*.csv", f"B={tmp_path}/b/*.csv", "--paired", "A", "B",
          "--tags", "occlusion,exit_reentry"])  # fmt: skip
    out = capsys.readouterr().out
    assert "| A − B | 10 | +2.0 | [+2.0, +2.0] |" in out
    assert "objects (occlusion or exit_reentry)" in out


def test_paired_comparison_errors(tmp_path):
    write_rows(tmp_path / "a.csv", objects(lambda i: 50.0))
    write_rows(tmp_path / "b.csv", objects(lambda i: 50.0)[:-1])
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"JF": 30.0}))
    a, b = read_run(tmp_path / "a.csv"), read_run(tmp_path / "b.csv")
    with pytest.raises(ValueError, match="different objects"):
        paired_difference([a], [b])
    with pytest.raises(ValueError, match="hold different objects"):
        paired_difference([a, b], [a, a])
    with pytest.raises(ValueError, match=r"no per-object rows\. Fix"):
        paired_difference([a], [read_run(tmp_path / "eval")])
    with pytest.raises(ValueError, match=r"tags seen: \['occlusion'\]"):
        paired_difference([a], [a], tags=["distractor"])


def test_extra_columns_follow_the_diagnostics_and_blank_ones_are_left_out(tmp_path):
    write_rows(tmp_path / "a.csv", objects(lambda i: 40 + i))
    rows = {"A": [read_run(tmp_path / "a.csv")], "B": [read_run(tmp_path / "a.csv")]}
    header, _, a, b = table(rows, {"cost": {"A": "1.00", "B": "1.50"}, "none": {}}).splitlines()
    assert header.endswith("| never % | cost |")
    assert a.endswith("| 1.00 |") and b.endswith("| 1.50 |")
    partial = table(rows, {"cost": {"B": "2.0"}}).splitlines()
    assert partial[2].endswith("| 50.0 |  |") and partial[3].endswith("| 2.0 |")


def write_sequences(path, rows):
    """A per-sequence CSV of box tracking (LaSOT layout) with `rows` of
    (sequence, class, success AUC, precision, normalized precision)."""
    fields = ["sequence", "class", "frames", "success_auc", "precision", "norm_precision"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for name, cls, auc, prec, norm in rows:
            writer.writerow(dict(zip(fields, (name, cls, 32, auc, prec, norm), strict=True)))
    return path


def test_box_tracking_rows_are_means_over_sequences_then_over_seeds(tmp_path, capsys):
    write_sequences(
        tmp_path / "a_1.csv", [("s2", "plain", 60, 70, 50), ("s1", "occlusion", 40, 50, 30)]
    )
    write_sequences(
        tmp_path / "a_2.csv", [("s1", "occlusion", 30, 40, 20), ("s2", "plain", 50, 60, 40)]
    )
    base = write_sequences(
        tmp_path / "base.csv", [("s1", "occlusion", 10, 0, 0), ("s2", "plain", 30, 20, 10)]
    )
    main([f"A={tmp_path}/a_*.csv", f"base={base}"])
    lines = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "model", "runs", "success AUC", "95% CI", "precision", "norm. precision",
        "occlusion AUC", "plain AUC",  # the test beds' tags first, then the others
    ]  # fmt: skip
    row = [c.strip() for c in lines[2].strip("|").split("|")]
    # runs of 50 and 40 AUC (means over their sequences): 45 ± 7.1
    assert row[:3] == ["A", "2", "45.0 ± 7.1"]
    assert row[4:] == ["55.0 ± 7.1", "35.0 ± 7.1", "35.0 ± 7.1", "55.0 ± 7.1"]
    low, high = (float(v) for v in row[3].strip("[]").split(","))
    assert 35.0 <= low < 45.0 < high <= 55.0  # over the two sequences' run means (35, 55)
    assert [c.strip() for c in lines[3].strip("|").split("|")][:3] == ["base", "1", "20.0"]


def test_box_tracking_and_vos_rows_are_not_mixed(tmp_path):
    seq = write_sequences(tmp_path / "s.csv", [("s1", "plain", 40, 50, 30)])
    obj = tmp_path / "o.csv"
    with obj.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        writer.writeheader()
    with pytest.raises(SystemExit, match="box-tracking CSVs, which make a table of their own"):
        main([f"boxes={seq}", f"masks={obj}"])
