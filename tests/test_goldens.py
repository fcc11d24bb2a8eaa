"""Behaviour goldens, for refactors that must change nothing: `eval.py`'s label PNGs and
metrics on 4 val videos of the small synthetic set with the micro SAM 2 of conftest's
`micro_weights`, and the logged losses of 20 seed-0 training steps, each in a fresh
one-thread process (float results depend on the thread count, which other tests in the
same process may change). A refactor leaves the PNGs byte-identical and the numbers
within 1e-6.

Goldens are kept per CPU vendor (`tests/goldens/<vendor_id>/`): another vendor's float
kernels round differently. Regenerate only for an intended change of behaviour (and say so
in the commit), on each vendor's machine:

    MOSAM_UPDATE_GOLDENS=1 python -m pytest tests/test_goldens.py
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import platform
from pathlib import Path

import pytest

UPDATE = os.environ.get("MOSAM_UPDATE_GOLDENS") == "1"
TOLERANCE = 1e-6


def cpu_vendor() -> str:
    """The CPU's vendor id (GenuineIntel, AuthenticAMD, ...): float kernels round differently
    on different vendors' CPUs (a mask pixel flips, then tracking diverges), so each keeps
    its own goldens, written on it."""
    for line in (
        Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    ):
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip()
    return platform.machine() or "unknown"


GOLDENS = Path(__file__).parent / "goldens" / cpu_vendor()


def check(name: str, found: dict) -> None:
    """`found` against the committed golden `name` (written instead when updating)."""
    path = GOLDENS / name
    if UPDATE:
        GOLDENS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        return
    if not path.is_file():
        pytest.fail(
            f"{path}: no goldens for this CPU vendor ({cpu_vendor()}). Fix: write them on a "
            f"commit whose behaviour is known good: MOSAM_UPDATE_GOLDENS=1 python -m pytest "
            f"tests/test_goldens.py"
        )
    expected = json.loads(path.read_text())
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            assert found[key] == value, key  # file hashes: byte-identical
        else:
            assert found[key] == pytest.approx(value, rel=TOLERANCE, abs=TOLERANCE, nan_ok=True), (
                key
            )


@pytest.mark.slow
def test_eval_label_pngs_and_metrics_match_the_goldens(
    small_synthetic, micro_weights, run_script, tmp_path
):
    out = tmp_path / "eval"
    run_script(
        "eval.py",
        f"ckpt={micro_weights}",
        "sam2=micro",
        f"data.root={small_synthetic}",
        "data.synthetic=false",
        "data.val_max_videos=4",
        "plots.videos=0",
        f"hydra.run.dir={out}",
        one_thread=True,  # float results depend on the thread count
    )
    pngs = {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((out / "predictions").rglob("*.png"))
    }
    metrics = json.loads((out / "metrics.json").read_text())
    numbers = {  # null (a mean over no object) compares as the golden's NaN
        k: math.nan if v is None else v
        for k, v in metrics.items()
        if (v is None or isinstance(v, int | float))
        and k not in ("ckpt", "baseline", "submission")  # the run's settings, not scores
    }
    assert len(pngs) == 4 * 32 and numbers["num_objects"] > 0
    check("eval_micro.json", {"pngs": pngs, "metrics": numbers})


@pytest.mark.slow
def test_training_losses_match_the_goldens(small_synthetic, run_script, tmp_path):
    out = tmp_path / "run"
    run_script(
        "train.py", "seed=0",
        f"data.root={small_synthetic}", "data.synthetic=false", "data.num_workers=0",
        "data.samples_per_epoch=8", "data.clip_len=4", "data.val_max_videos=1",
        "trainer.max_steps=20", "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=20", "export.name=null", f"hydra.run.dir={out}",
        "callbacks.rich_progress_bar=null", one_thread=True,
    )  # fmt: skip
    rows = list(csv.DictReader((out / "csv" / "version_0" / "metrics.csv").open()))
    terms = ("train/loss", "train/loss_mask", "train/loss_dice", "train/loss_iou", "val/jf")
    found = {term: [float(r[term]) for r in rows if r.get(term)] for term in terms}
    assert len(found["train/loss"]) == 20 and len(found["val/jf"]) == 1
    check("train_seed0_20_steps.json", found)
