"""The official VOT toolkit (extra `vot`) runs the tracker entry point over TraX and scores
it on a workspace the project writes, offline (the launcher turns the update check off).

The toolkit's `test` and `evaluate` exit 0 even when the tracker failed, so every test
here reads what was tracked (the tracker's `record=` file, the toolkit's report), never
the exit code alone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from importlib.metadata import distributions
from pathlib import Path

import pytest
import yaml

from mosam_train.integrations import vot_report
from mosam_train.integrations.vot_workspace import (
    eval_records,
    trackers_ini,
    write_sequence,
    write_workspace,
)
from mosam_train.integrations.vot_workspace import (
    main as workspace_main,
)

REPO = Path(__file__).resolve().parents[2]
DUMMY_FRAMES, DUMMY_OBJECTS = 50, 3  # the toolkit's own test sequence (boxes)


def toolkit(*args: str, cwd: Path, timeout: float = 150) -> str:
    """`vot <args>` through `mosam_train.integrations.vot_toolkit`, this checkout first on
    the path, one thread; its whole output (log and the tracker's messages)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mosam_train.integrations.vot_toolkit", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return proc.stdout + proc.stderr


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def vot_sequence(small_synthetic, tmp_path_factory) -> Path:
    """Object 1 of the first val video of `small_synthetic` as a VOT sequence, 8 frames."""
    root = tmp_path_factory.mktemp("vot_sequences")
    record = eval_records([f"data.root={small_synthetic}", "data.synthetic=false"])[0]
    name = write_sequence(record, int(record.object_ids[0]), 8, root)
    assert name is not None
    return root / name


def test_cv2_is_one_headless_build():
    """The toolkit asks for the GUI build (opencv-python); it is installed without its
    dependencies so that the headless build stays the only cv2."""
    owners = {
        d.metadata["Name"].lower()
        for d in distributions()
        if any(str(f).startswith("cv2/") for f in (d.files or []))
    }
    assert len(owners) == 1 and next(iter(owners)).endswith("-headless"), owners
    import cv2

    assert re.search(r"GUI:\s+NONE", cv2.getBuildInformation())


def test_toolkit_test_tracks_every_frame_of_every_box(tmp_path, micro_weights):
    """The toolkit's `test`: its synthetic sequence, three objects given as boxes, answered
    as boxes, every frame."""
    record = tmp_path / "record.jsonl"
    (tmp_path / "trackers.ini").write_text(
        trackers_ini([f"ckpt={micro_weights}", f"record={record}"])
    )
    out = toolkit("--registry", str(tmp_path), "test", "mosam", cwd=tmp_path)
    assert "Test concluded successfuly" in out, out[-3000:]
    lines = records(record)
    assert [x["frame"] for x in lines] == list(range(DUMMY_FRAMES))
    assert {x["session"] for x in lines} == {1}
    for k, x in enumerate(lines):
        assert x["file"].endswith(f"{k + 1:08d}.jpg")  # the frames in the order given
        assert [o["region"] for o in x["objects"]] == ["rectangle"] * DUMMY_OBJECTS
    assert all(o["pixels"] > 0 for o in lines[0]["objects"])


def test_toolkit_test_tracks_a_mask_sequence_with_masks(tmp_path, micro_weights, vot_sequence):
    record = tmp_path / "record.jsonl"
    (tmp_path / "trackers.ini").write_text(
        trackers_ini([f"ckpt={micro_weights}", f"record={record}"])
    )
    out = toolkit(
        "--registry", str(tmp_path), "test", "mosam", "--sequence", str(vot_sequence),
        cwd=tmp_path,
    )  # fmt: skip
    assert "Test concluded successfuly" in out, out[-3000:]
    lines = records(record)
    assert [x["frame"] for x in lines] == list(range(8))
    assert all([o["region"] for o in x["objects"]] == ["mask"] for x in lines)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["ckpt=/nonexistent/model.ckpt"], "ckpt=/nonexistent/model.ckpt: no such file"),
        (["baseline=copy_first", "tracker=nope"], "Could not find 'tracker/nope'"),
        (["baseline=copy_first", "region=polygon"], "it cannot produce polygon"),
    ],
)
def test_bad_configuration_is_the_toolkits_error_before_any_frame(tmp_path, args, reason):
    record = tmp_path / "record.jsonl"
    (tmp_path / "trackers.ini").write_text(trackers_ini([*args, f"record={record}"]))
    start = time.monotonic()
    out = toolkit("--registry", str(tmp_path), "test", "mosam", cwd=tmp_path, timeout=60)
    assert "Server terminated the session" in out and reason in out, out[-3000:]
    assert "Test concluded successfuly" not in out
    assert not record.exists()  # no frame answered
    assert time.monotonic() - start < 45  # reported, not a time-out


def test_unreadable_frame_ends_the_session_naming_the_file(tmp_path, vot_sequence):
    sequence = tmp_path / "broken"
    sequence.mkdir()
    for f in vot_sequence.rglob("*"):
        if f.is_file():
            target = sequence / f.relative_to(vot_sequence)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.read_bytes())
    bad = sequence / "color" / "00000004.png"
    bad.write_bytes(b"not a png")
    record = tmp_path / "record.jsonl"
    (tmp_path / "trackers.ini").write_text(
        trackers_ini(["baseline=copy_first", f"record={record}"])
    )
    out = toolkit(
        "--registry", str(tmp_path), "test", "mosam", "--sequence", str(sequence), cwd=tmp_path
    )
    assert "Server terminated the session" in out and f"{bad}: cannot read image" in out, out
    assert [x["frame"] for x in records(record)] == [0, 1, 2]


def test_toolkit_scores_a_workspace_written_by_the_project(tmp_path, small_synthetic):
    """2 sequences x 10 frames of the synthetic val split, the toolkit's evaluate and
    analysis on the local stack. The tracker here is the entry point with the flow-warp
    baseline (no weights; the tests have no trained model yet): it must beat the static
    baseline by 0.1 in VOTS' quality, so frames that reached it out of order or regions
    decoded wrongly fail the test."""
    workspace = tmp_path / "ws"
    record = tmp_path / "record.jsonl"
    names = write_workspace(
        workspace,
        ["baseline=flow_warp", f"record={record}"],
        [f"data.root={small_synthetic}", "data.synthetic=false"],
        videos=2,
        frames=10,
        sequences=2,
    )
    assert len(names) == 2
    stack = yaml.safe_load((workspace / "stack.yaml").read_text())
    assert "not comparable with published VOT results" in stack["title"]
    out = toolkit("evaluate", "--workspace", str(workspace), "mosam", "static", cwd=tmp_path)
    assert "Evaluation concluded successfuly" in out, out[-3000:]
    # runs start at anchors inside the sequences, re-initialising one tracker process, and
    # some go backwards: each run (from a frame-0 line to the next) is tracked in its order
    lines = records(record)
    assert max(x["session"] for x in lines) >= 2
    runs: list[list[str]] = []
    for x in lines:
        if x["frame"] == 0:
            runs.append([])
        runs[-1].append(Path(x["file"]).stem)
    directions = {
        "forward" if run == sorted(run) else "backward" if run == sorted(run, reverse=True) else "?"
        for run in runs
        if len(run) > 1
    }
    assert directions == {"forward", "backward"}, runs
    out = toolkit("analysis", "--workspace", str(workspace), "--name", "report", cwd=tmp_path)
    assert "Analysis successful" in out, out[-3000:]
    report = json.loads((workspace / "analysis" / "report.json").read_text())
    assert set(report["sequences"]) == set(names)
    measures = vot_report.measures(report)
    assert set(measures) == {"baseline", "unsupervised"}
    assert set(measures["baseline"]) == {"EAO", "EAO curve", "AR"}
    assert set(measures["unsupervised"]) == {"Quality", "AR"}
    for per_tracker in (*measures["baseline"].values(), *measures["unsupervised"].values()):
        assert set(per_tracker) == {"mosam", "static"}
    quality = {k: v[0] for k, v in measures["unsupervised"]["Quality"].items()}
    eao = {k: v[0] for k, v in measures["baseline"]["EAO"].items()}
    assert all(0 <= q <= 1 for q in (*quality.values(), *eao.values())), (quality, eao)
    assert quality["mosam"] >= quality["static"] + 0.1, quality
    # the table shows the toolkit's figures, a column per scalar measure
    table = vot_report.table(report).splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == [
        "tracker", "label", "baseline EAO", "baseline Accuracy", "baseline Robustness",
        "unsupervised Quality", "unsupervised Accuracy", "unsupervised Robustness",
    ]  # fmt: skip
    rows = {
        r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in table[2:]
    }
    assert set(rows) == {"mosam", "static"}
    for name in rows:
        assert rows[name][2] == f"{eao[name]:.3f}"
        assert rows[name][5] == f"{quality[name]:.3f}"
    # trackers grouped as seeds: one row, mean ± sample std (two values: |a - b| / sqrt 2)
    grouped = vot_report.table(report, {"both": ["mosam", "static"]}).splitlines()
    assert len(grouped) == 3
    cells = [c.strip() for c in grouped[2].strip("|").split("|")]
    a, b = quality["mosam"], quality["static"]
    assert cells[:2] == ["both", "mean ± std of mosam, static"]
    assert cells[5] == f"{(a + b) / 2:.3f} ± {abs(a - b) / 2**0.5:.3f}"
    with pytest.raises(SystemExit, match="not in the report: mosam1"):
        vot_report.table(report, {"both": ["mosam", "mosam1"]})


def test_named_entries_join_the_workspace_registry(tmp_path, small_synthetic, micro_weights):
    data = ["--data", f"data.root={small_synthetic}", "--data", "data.synthetic=false"]
    workspace_main([
        str(tmp_path / "ws"), "--tracker", "baseline=flow_warp",
        "--named", "base", f"ckpt={micro_weights} sam2=micro tracker=samurai",
        *data, "--videos", "1", "--frames", "4", "--sequences", "1",
    ])  # fmt: skip
    ini = (tmp_path / "ws" / "trackers.ini").read_text()
    assert re.findall(r"^\[(\w+)\]$", ini, flags=re.M) == ["mosam", "base", "static"]
    base = ini.split("[base]")[1].split("[static]")[0]
    assert f"mosam_train.integrations.vot ckpt={micro_weights} sam2=micro tracker=samurai" in base
    for named, message in (
        (["static", "baseline=flow_warp"], "static: that name is the workspace's own"),
        (["base", "ckpt=relative/model.pt"], "base: ckpt=relative/model.pt is relative"),
        (["base", "baseline=copy_first tracker=nope"], "Could not find 'tracker/nope'"),
    ):
        with pytest.raises((SystemExit, Exception), match=re.escape(message)):
            workspace_main([
                str(tmp_path / "other"), "--tracker", "baseline=flow_warp", "--named", *named,
                *data,
            ])  # fmt: skip
        assert not (tmp_path / "other").exists()
