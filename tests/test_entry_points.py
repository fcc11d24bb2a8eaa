"""train.py and eval.py end to end as users run them (Hydra apps in subprocesses)."""

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from mosam_train.lit.module import MoSAMModule


@pytest.fixture(scope="module")
def trained(run_script, small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    shared = tmp_path_factory.mktemp("shared") / "sam2_micro_synthetic.pt"
    shared.write_bytes(b"a trained base")  # a short run must leave it as it is
    proc = run_script(
        "train.py",
        *small_data(samples_per_epoch=4),
        "trainer.max_steps=4",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=2",
        f"hydra.run.dir={out}",
        f"export.publish_dir={shared.parent}",
        "callbacks.rich_progress_bar=null",
    )
    assert shared.read_bytes() == b"a trained base"
    assert [p.name for p in shared.parent.iterdir()] == [shared.name]
    assert f"{shared} left as it is: this run trained 4 steps" in proc.stdout + proc.stderr
    best = next((out / "checkpoints").glob("step*.ckpt"))
    return out, best, out / "export" / "sam2_micro_synthetic.pt"


@pytest.mark.slow
def test_train_writes_checkpoints_and_plain_hparams(trained):
    out, best, export = trained
    assert (out / "checkpoints" / "last.ckpt").is_file()
    ckpt = torch.load(best, map_location="cpu", weights_only=True)  # no OmegaConf inside
    assert ckpt["hyper_parameters"]["sam2"]["variant"] == "sam2.1_micro"
    module = MoSAMModule.load_from_checkpoint(best, map_location="cpu")
    exported = torch.load(export, weights_only=True)["model"]
    for k, v in module.model.sam2.state_dict().items():
        assert torch.equal(exported[k], v), k
    metrics = list(csv.DictReader((out / "csv" / "version_0" / "metrics.csv").open()))
    assert any(r.get("val/jf") for r in metrics)
    # the diagnostics, overall and per tag (the small synthetic set tags its videos)
    logged = set(metrics[0])
    for key in ("j_visible", "fp_absent", "latency_mean", "never_redetected", "jf_ci_low"):
        assert f"val/{key}" in logged, key
    assert {k for k in logged if k.startswith("val/") and k.endswith("/fp_absent")} - {
        "val/fp_absent"
    }, logged
    assert any(r.get("train/loss") for r in metrics)
    # one J&F-per-video plot per validation (val_check_interval=2, 4 steps)
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert plots == ["val_step000002_jf_per_video.png", "val_step000004_jf_per_video.png"]


def _not_json(token: str) -> None:
    raise AssertionError(f"metrics.json holds {token}, which is not JSON")


@pytest.mark.slow
def test_eval_writes_outputs_and_matches_exported_weights(
    run_script, trained, small_data, tmp_path
):
    _, best, export = trained
    a, b = tmp_path / "a", tmp_path / "b"
    run_script("eval.py", f"ckpt={best}", *small_data(samples_per_epoch=4), f"hydra.run.dir={a}")
    run_script(
        "eval.py",
        f"ckpt={export}",
        "sam2=micro",
        *small_data(samples_per_epoch=4),
        f"hydra.run.dir={b}",
    )
    ma = json.loads((a / "metrics.json").read_text(), parse_constant=_not_json)
    mb = json.loads((b / "metrics.json").read_text())
    assert ma["num_objects"] > 0 and 0 <= ma["JF"] <= 100
    assert ma["JF"] == pytest.approx(mb["JF"], abs=1e-9)
    rows = list(csv.DictReader((a / "per_object.csv").open()))
    assert len(rows) == ma["num_objects"]
    pngs = sorted((a / "predictions").rglob("*.png"))
    assert len(pngs) == 2 * 32  # two val videos, every frame
    # pictures: J&F per video, and J over time + an overlay for the first videos
    plots = sorted(p.name for p in (a / "plots").iterdir())
    assert plots == ["jf_per_video.png", "val_0000.gif", "val_0000_j.png", "val_0001.gif", "val_0001_j.png"]  # fmt: skip

    # A rerun in the same directory resumes: nothing is recomputed, same numbers.
    (a / "predictions").rename(a / "old_predictions")
    run_script("eval.py", f"ckpt={best}", *small_data(samples_per_epoch=4), f"hydra.run.dir={a}")
    assert json.loads((a / "metrics.json").read_text())["JF"] == ma["JF"]
    assert not (a / "predictions").exists()
    # Rows of another evaluation are never mixed in.
    other = run_script(
        "eval.py",
        "baseline=copy_first",
        *small_data(samples_per_epoch=4),
        f"hydra.run.dir={a}",
        ok=False,
    )
    assert other.returncode != 0 and "holds results of another model" in other.stderr


@pytest.mark.slow
def test_copy_first_baseline_needs_no_checkpoint(run_script, small_data, tmp_path):
    run_script(
        "eval.py",
        "baseline=copy_first",
        *small_data(samples_per_epoch=4),
        f"hydra.run.dir={tmp_path}",
    )
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["baseline"] == "copy_first" and m["JF"] < 60


@pytest.fixture(scope="module")
def mosam_trained(run_script, trained, small_data, tmp_path_factory):
    _, _, export = trained
    out = tmp_path_factory.mktemp("mosam")
    run_script(
        "train.py",
        "experiment=mosam_synthetic",
        *small_data(samples_per_epoch=4),
        f"model.sam2.weights={export}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        f"hydra.run.dir={out}",
        "callbacks.rich_progress_bar=null",
    )
    return out, next((out / "checkpoints").glob("step*.ckpt")), export


@pytest.mark.slow
def test_mosam_experiment_trains_and_its_checkpoint_evaluates(
    run_script, mosam_trained, small_data, tmp_path
):
    _, best, export = mosam_trained
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert ckpt["sam2_base"]["path"] == str(export)
    assert not any(k.startswith("model.sam2.") for k in ckpt["state_dict"])
    run_script(
        "eval.py", f"ckpt={best}", *small_data(samples_per_epoch=4), f"hydra.run.dir={tmp_path}"
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_objects"] > 0 and 0 <= metrics["JF"] <= 100


def _real_layout(experiment: str, root: Path) -> list[str]:
    """Writes the experiment's dataset (and its validation set) in the real layouts under
    `root`; returns the overrides that point the experiment there."""
    from layouts.davis import write_davis
    from layouts.mose import write_mose
    from layouts.sav import write_sav_train, write_sav_val
    from layouts.ytvos import write_ytvos

    if experiment == "mosam_sav":
        write_sav_train(root / "SA-V", num_videos=2)
        write_sav_val(root / "SA-V", "sav_val", num_videos=1)
        return [f"data.root={root / 'SA-V'}"]
    if experiment == "mosam_ytvos":
        write_ytvos(root / "ytvos", "train")
    else:
        write_mose(root / "mose", "train")
    write_davis(root / "DAVIS", "val", num_videos=1)
    name = experiment.removeprefix("mosam_")
    return [f"data.root={root / name}", f"data.val.root={root / 'DAVIS'}"]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["mosam_sav", "mosam_ytvos", "mosam_mose"])
def test_real_data_experiments_run_a_fast_dev_run(run_script, experiment, tmp_path):
    """The shipped experiments, on the micro model and fixture roots in the real layouts."""
    from mosam_train.models.sam2_builder import build_sam2

    torch.manual_seed(0)
    base = tmp_path / "base.pt"
    torch.save({"model": build_sam2("sam2.1_micro").state_dict()}, base)
    proc = run_script(
        "train.py",
        f"experiment={experiment}",
        *_real_layout(experiment, tmp_path / "data"),
        "sam2=micro",
        f"model.sam2.weights={base}",
        "trainer=cpu",
        "+trainer.fast_dev_run=1",
        "data.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
        "callbacks.rich_progress_bar=null",
    )
    log = proc.stdout + proc.stderr
    assert "fast_dev_run" in log and "Traceback" not in log
    assert "max_steps=1` reached" in log  # one training step on a real-layout clip ...
    assert re.search(r"val/jf[:=]\s*\d+\.\d+", log), log[-2000:]  # ... and a scored video
    assert "max frame skip ->" in log  # the curriculum reached the dataset


@pytest.fixture(scope="module")
def small_long_set(tmp_path_factory):
    """A small long-video set in the real layout (1 val video of 64-72 frames)."""
    from mosam_train.data import synthetic_long as sl

    root = tmp_path_factory.mktemp("long") / "set"
    sl.ensure_synthetic_long(
        root, num_train=20, num_val=1, num_test=1, train_frames=64, min_frames=64,
        max_frames=72, workers=1, progress=False,
    )  # fmt: skip
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    "experiment", ["sam2_micro_long_stage1", "sam2_micro_long_multimask", "mosam_long"]
)
def test_long_bed_experiments_run_a_fast_dev_run(run_script, experiment, small_long_set, tmp_path):
    """The base's recipe from random init, and the experiments that start from the shipped
    base by default (its file and sha256 checked as they load it)."""
    proc = run_script(
        "train.py",
        f"experiment={experiment}",
        f"data.root={small_long_set}",
        "data.synthetic=false",
        "data.val_max_videos=1",
        "data.num_workers=0",
        "+trainer.fast_dev_run=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        "callbacks.rich_progress_bar=null",
    )
    log = proc.stdout + proc.stderr
    assert "Traceback" not in log and "max_steps=1` reached" in log, log[-2000:]
    assert re.search(r"val/jf[:=]\s*\d+\.\d+", log), log[-2000:]
