"""J&F scoring against the reference evaluator: the same numbers, and the time each takes.

    python -m mosam_train.bench.score [--videos 24] [--frames 40] [--objects 3] [--size 480p]
        [--repeats 3] [--reference-dir DIR] [--workdir DIR] [--tiny]

It writes a synthetic DAVIS-layout set (``Annotations/480p/<video>/<frame>.png`` palette
PNGs: ellipses moving and bouncing, each object visible from the first frame on, as DAVIS
2017 and both evaluators assume) and predictions made from the ground truth by per-object,
per-frame perturbations (shift, erosion, dilation, a dropped object, a dropped frame), so that
scores are neither 0 nor 100. Then it scores the predictions with the project's CLI
(``python -m mosam_train.metrics.score GT PRED``) and with ``vos-benchmark`` (hkchengrex's
DAVIS-style J&F evaluator; ``vos_benchmark.benchmark.benchmark``, which has no command line),
each in a fresh subprocess, and prints both evaluators' J, F and J&F, their largest difference
per video and overall, and their times as the median of interleaved repeats.

``vos-benchmark`` is not a project dependency (it declares the GUI OpenCV): the bench installs
it with ``pip install --no-deps --target`` into a cache folder (``--reference-dir``), with
those of its imports the environment lacks (in the project's: ``scikit-image``, for ``disk``,
and ``lazy_loader``, which it imports), and appends that folder to the subprocess's
``sys.path``.

Both evaluators run single-threaded in one process each (``OMP_NUM_THREADS=1``,
``OPENCV_FOR_THREADS_NUM=1``; ``vos-benchmark`` with ``num_processes=1``, where its default
is one worker per core). ``score s`` is the scoring call alone, ``process s`` the whole fresh
interpreter (imports and start-up included).

``--tiny`` is the test suite's mode (3 videos x 6 frames x 2 objects, 128x72, one repeat):
if the reference cannot be installed (no network) it scores with the project's CLI only and
records that; the full bench then fails with the fix instead.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

import mosam_train
from mosam_train.bench.pip_target import ReferenceUnavailable, pip_target
from mosam_train.palette import voc_palette

REFERENCE = "vos-benchmark==0.1.0"
# import name -> pip requirement: vos_benchmark's imports (numpy, PIL, tqdm, cv2 and skimage)
# plus what skimage imports; only those the environment lacks are installed
REFERENCE_MODULES = {
    "vos_benchmark": REFERENCE,
    "skimage": "scikit-image",
    "lazy_loader": "lazy_loader",
    "tqdm": "tqdm",
}
SIZES = {"480p": (480, 854), "1080p": (1080, 1920)}
TINY = {"videos": 3, "frames": 6, "objects": 2, "size": (72, 128), "repeats": 1}
SINGLE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OPENCV_FOR_THREADS_NUM": "1",
}

OURS = """
import json, sys, time
t0 = time.perf_counter()
from mosam_train.metrics.score import main
t1 = time.perf_counter()
rc = main(sys.argv[1:])
t2 = time.perf_counter()
print(json.dumps({"rc": rc, "import_s": t1 - t0, "score_s": t2 - t1}))
"""
THEIRS = """
import json, sys, time
sys.path.append(sys.argv[1])
t0 = time.perf_counter()
from vos_benchmark.benchmark import benchmark
t1 = time.perf_counter()
jf, j, f, objects = benchmark([sys.argv[2]], [sys.argv[3]], num_processes=1, verbose=False)
t2 = time.perf_counter()
per = {v: {str(k): [float(iou[k]), float(bf[k])] for k in iou} for v, (iou, bf) in objects[0].items()}
out = {"J": float(j[0]), "F": float(f[0]), "JF": float(jf[0]), "objects": per}
print(json.dumps({**out, "import_s": t1 - t0, "score_s": t2 - t1}))
"""


def _size(text: str) -> tuple[int, int]:
    """'480p' or 'WxH' -> (H, W)."""
    if text in SIZES:
        return SIZES[text]
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--size {text}: use one of {sorted(SIZES)} or WIDTHxHEIGHT (e.g. 854x480)"
        ) from None
    return h, w


def _labels(rng: np.random.Generator, frames: int, objects: int, h: int, w: int) -> np.ndarray:
    """uint8 [T, H, W]: `objects` ellipses (ids 1..K, later ids drawn on top) moving at
    constant speed and bouncing off the borders; side by side in the first frame so every
    object is visible in the first two frames."""
    s = h / 480
    slot = w / objects
    axes = np.stack([rng.uniform(0.3, 0.45, objects) * slot, rng.uniform(40, 90, objects) * s], 1)
    axes = np.minimum(axes, [slot * 0.45, h * 0.3])
    pos = np.stack([(np.arange(objects) + 0.5) * slot, rng.uniform(0.35, 0.65, objects) * h], 1)
    vel = rng.uniform(2, 7, (objects, 2)) * s * rng.choice([-1, 1], (objects, 2))
    angle = rng.uniform(0, 180, objects)
    out = np.zeros((frames, h, w), np.uint8)
    for t in range(frames):
        for k in range(objects):
            center = tuple(int(v) for v in np.rint(pos[k]))
            size = (max(int(axes[k, 0]), 2), max(int(axes[k, 1]), 2))
            cv2.ellipse(out[t], center, size, angle[k] + 2 * t, 0, 360, k + 1, -1)
        pos += vel
        for d, limit in ((0, w), (1, h)):
            bounce = (pos[:, d] < 0) | (pos[:, d] > limit)
            vel[bounce, d] *= -1
            pos[:, d] = np.clip(pos[:, d], 0, limit)
    return out


def _perturb(rng: np.random.Generator, label: np.ndarray, objects: int) -> np.ndarray:
    """A prediction of `label`: the frame dropped (5%), or each object exact (30%), shifted
    (25%), eroded or dilated (30%) or dropped (10%), painted in id order."""
    out = np.zeros_like(label)
    if rng.random() < 0.05:
        return out
    s = label.shape[0] / 480
    for k in range(1, objects + 1):
        mask = (label == k).astype(np.uint8)
        op = rng.choice(["exact", "shift", "morph", "drop"], p=[0.3, 0.25, 0.35, 0.1])
        if op == "drop":
            continue
        if op == "shift":
            dx, dy = rng.integers(2, 12, 2) * s * rng.choice([-1, 1], 2)
            shift = np.float32([[1, 0, dx], [0, 1, dy]])
            mask = cv2.warpAffine(mask, shift, mask.shape[::-1], flags=cv2.INTER_NEAREST)
        elif op == "morph":
            r = max(int(rng.integers(1, 8) * s), 1)
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            mask = (cv2.erode if rng.random() < 0.5 else cv2.dilate)(mask, kernel)
        out[mask > 0] = k
    return out


def _png(path: Path, label: np.ndarray) -> None:
    png = Image.fromarray(label)
    png.putpalette(list(voc_palette()))
    png.save(path)


def write_set(root: Path, videos: int, frames: int, objects: int, size: tuple[int, int]) -> None:
    """``root/DAVIS/Annotations/480p/<video>/`` ground truth and ``root/pred/<video>/``."""
    gt_root, pred_root = root / "DAVIS" / "Annotations" / "480p", root / "pred"
    for v in range(videos):
        rng = np.random.default_rng(v)
        labels = _labels(rng, frames, objects, *size)
        for t in (0, 1):
            missing = set(range(1, objects + 1)) - set(np.unique(labels[t]).tolist())
            assert not missing, f"video {v}: objects {missing} not visible in frame {t}"
        gt, pred = gt_root / f"video{v:03d}", pred_root / f"video{v:03d}"
        gt.mkdir(parents=True, exist_ok=True)
        pred.mkdir(parents=True, exist_ok=True)
        for t, label in enumerate(labels):
            _png(gt / f"{t:05d}.png", label)
            _png(pred / f"{t:05d}.png", _perturb(rng, label, objects))


def _run(code: str, args: list[str], pythonpath: str) -> tuple[dict, float, str]:
    """(the last stdout line as JSON, process wall seconds, stdout) of a fresh interpreter."""
    env = {**os.environ, **SINGLE_THREAD}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{args}: exit status {done.returncode}\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall, done.stdout


def _ours(gt: Path, pred: Path, csv_path: Path | None = None) -> tuple[dict, dict, float]:
    """(the CLI's JSON, timings, process seconds) of `python -m mosam_train.metrics.score`."""
    project = str(Path(mosam_train.__file__).resolve().parents[1])  # this checkout's code
    args = [str(gt), str(pred), *(["--csv", str(csv_path)] if csv_path else [])]
    timing, wall, stdout = _run(OURS, args, project)
    if timing["rc"] != 0:
        raise RuntimeError(f"python -m mosam_train.metrics.score {' '.join(args)} failed")
    return json.loads(stdout.strip().splitlines()[-2]), timing, wall


def _theirs(target: Path, gt: Path, pred: Path) -> tuple[dict, float]:
    out, wall, _ = _run(THEIRS, [str(target), str(gt), str(pred)], "")
    return out, wall


def _per_object(csv_path: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """video -> object id -> (J, F) x100, from the CLI's --csv."""
    per: dict[str, dict[str, tuple[float, float]]] = {}
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            per.setdefault(row["video"], {})[row["object_id"]] = (float(row["J"]), float(row["F"]))
    return per


def _differences(ours: dict, theirs: dict) -> dict[str, dict[str, float]]:
    """video -> largest |dJ|, |dF|, |dJ&F| over its objects (x100 units); raises on other objects."""
    diff = {}
    for video in sorted(set(ours) | set(theirs)):
        a, b = ours.get(video, {}), theirs.get(video, {})
        if set(a) != set(b):
            raise RuntimeError(f"{video}: objects {sorted(a)} (ours) vs {sorted(b)} (reference)")
        diff[video] = {
            "J": max(abs(a[k][0] - b[k][0]) for k in a),
            "F": max(abs(a[k][1] - b[k][1]) for k in a),
            "JF": max(abs((a[k][0] + a[k][1]) / 2 - (b[k][0] + b[k][1]) / 2) for k in a),
        }
    return diff


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=24)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--objects", type=int, default=3)
    p.add_argument("--size", type=_size, default=SIZES["480p"], help="480p, 1080p or WxH")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed runs of each")
    p.add_argument("--reference-dir", type=Path, help="vos-benchmark's --target folder")
    p.add_argument("--workdir", type=Path, help="write the set here (default: a temp folder)")
    p.add_argument("--decimals", type=int, default=3, help="decimals printed and compared")
    p.add_argument("--tiny", action="store_true", help="the test suite's size")
    args = p.parse_args(argv)
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    if args.frames < 3 or args.objects < 1 or args.videos < 1:
        p.error("need --frames >= 3 (the first and last are not scored), --objects >= 1")
    console = Console(width=120)
    try:
        target = pip_target("vos-benchmark", REFERENCE_MODULES, ("vos_benchmark",),
                            args.reference_dir)  # fmt: skip
        unavailable = None
    except ReferenceUnavailable as e:
        if not args.tiny:
            console.print(f"[red]error[/red]: {e}", highlight=False, soft_wrap=True)
            return 1
        target, unavailable = None, str(e)
        console.print(f"reference unavailable, scoring ours only: {e}", highlight=False)
    h, w = args.size
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        gt, pred = work / "DAVIS" / "Annotations" / "480p", work / "pred"
        console.print(f"writing {args.videos} videos x {args.frames} frames x {args.objects} "
                      f"objects at {w}x{h} to {work} ...", highlight=False)  # fmt: skip
        write_set(work, args.videos, args.frames, args.objects, (h, w))
        # one untimed run each for the per-object numbers (and warm file caches)
        ours, _, _ = _ours(gt, pred, work / "ours.csv")
        theirs = _theirs(target, gt, pred)[0] if target else None
        times: dict[str, list[float]] = {"ours": [], "ours_proc": [], "ref": [], "ref_proc": []}
        for r in range(args.repeats):
            order = ("ours", "ref") if r % 2 == 0 else ("ref", "ours")
            for who in order:
                if who == "ours":
                    _, timing, wall = _ours(gt, pred)
                elif target:
                    timing, wall = _theirs(target, gt, pred)
                else:
                    continue
                times[who].append(timing["score_s"])
                times[f"{who}_proc"].append(wall)
            console.print(f"repeat {r + 1}/{args.repeats}: ours {times['ours'][-1]:.2f} s"
                          + (f", vos-benchmark {times['ref'][-1]:.2f} s" if target else ""),
                          highlight=False)  # fmt: skip
        per_ours = _per_object(work / "ours.csv")
    med = {k: statistics.median(v) if v else None for k, v in times.items()}
    d = args.decimals
    result: dict = {
        "bench": "score",
        "videos": args.videos,
        "frames": args.frames,
        "objects": args.objects,
        "size": f"{w}x{h}",
        "repeats": args.repeats,
        "threads": 1,
        "ours": {k: ours[k] for k in ("J", "F", "JF")}
        | {"score_s": med["ours"], "process_s": med["ours_proc"]},
    }
    table = Table(title=f"J&F of {args.videos} videos x {args.frames} frames x {args.objects} "
                  f"objects at {w}x{h}; seconds: median of {args.repeats} interleaved runs, "
                  f"one process, one thread each")  # fmt: skip
    for col in ("evaluator", "J", "F", "J&F", "score s", "process s"):
        table.add_column(col)

    def row(name: str, scores: dict, score_s: float, proc_s: float) -> None:
        table.add_row(name, *(f"{scores[k]:.{d}f}" for k in ("J", "F", "JF")),
                      f"{score_s:.2f}", f"{proc_s:.2f}")  # fmt: skip

    row("ours: python -m mosam_train.metrics.score", ours, med["ours"], med["ours_proc"])
    if theirs is None:
        result["reference"] = f"unavailable: {unavailable}"
        console.print(table)
        print(json.dumps(result))
        return 0
    row(f"{REFERENCE} (num_processes=1)", theirs, med["ref"], med["ref_proc"])
    ratio_score, ratio_proc = med["ours"] / med["ref"], med["ours_proc"] / med["ref_proc"]
    table.add_row(
        "ratio ours / vos-benchmark", "", "", "", f"{ratio_score:.2f}", f"{ratio_proc:.2f}"
    )
    console.print(table)
    per_video = _differences(per_ours, theirs["objects"])
    overall = {k: abs(ours[k] - theirs[k]) for k in ("J", "F", "JF")}
    agree = all(f"{ours[k]:.{d}f}" == f"{theirs[k]:.{d}f}" for k in ("J", "F", "JF")) and all(
        max(v.values()) < 0.5 * 10**-d for v in per_video.values()
    )
    diffs = Table(title="largest |ours - vos-benchmark| per video (over its objects, x100 units)")
    for col in ("video", "|dJ|", "|dF|", "|dJ&F|"):
        diffs.add_column(col)
    for video, v in [*per_video.items(), ("overall (pooled)", overall)]:
        diffs.add_row(video, *(f"{v[k]:.1e}" for k in ("J", "F", "JF")))
    console.print(diffs)
    result.update(
        reference={k: theirs[k] for k in ("J", "F", "JF")}
        | {"score_s": med["ref"], "process_s": med["ref_proc"], "version": REFERENCE},
        ratio_score_s=ratio_score,
        ratio_process_s=ratio_proc,
        max_abs_diff={"overall": overall, "per_video_max": {
            k: max(v[k] for v in per_video.values()) for k in ("J", "F", "JF")}},
        agree_to_decimals=d if agree else None,
    )  # fmt: skip
    print(json.dumps(result))
    if not agree:
        console.print(f"[red]error[/red]: the evaluators disagree at {d} decimals (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
