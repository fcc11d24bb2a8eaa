"""The GPU check: one command, a few minutes on one GPU with random weights, one table.

    python -m mosam_train.bench.gpu_check [--device cuda] [--frames 16] [--repeats 3]
        [--clip-len 16] [--tiny]

It prints, for SAM 2.1 tiny at 1024 px (two objects, frames preloaded on the device):

- milliseconds per frame of SAM 2's own `SAM2VideoPredictor`, our engine and MoSAM (all
  parts, Farneback flow), in bf16 autocast (as `eval.py` runs on CUDA) and in float32;
  the median of `--repeats` interleaved repeats after a warm-up, the device synchronised
  before each clock reading;
- one frozen-base MoSAM training step on a `--clip-len`-frame clip (bf16 autocast, as
  `trainer=gpu` trains): seconds and the device's peak memory;
- the data loader: clips per second of one worker drawing MoSAM's training clips
  (1024 px, Farneback at 256 px) from a JPEG-folder set.

`--tiny` runs the same code on the micro SAM 2 at 128 px with a few frames (the test
suite's CPU dry run). On CPU, bf16 autocast is skipped (the rows say so).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import cv2
import torch
from rich.console import Console
from rich.table import Table

from mosam_train.bench import infer, train
from mosam_train.bench.data import write_jpeg_video
from mosam_train.data.datamodule import ClipDataset
from mosam_train.data.formats import read_split
from mosam_train.data.synthetic import ensure_synthetic
from mosam_train.data.transforms import build_train_transform
from mosam_train.inference.engine import VideoPropagator
from mosam_train.models.mosam import MoSAMTracker
from mosam_train.models.sam2_builder import build_sam2
from mosam_train.models.video_sam import VideoSAM
from mosam_train.optical_flow import FarnebackFlow
from mosam_train.trackers import build_tracker


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def frame_runners(
    size: str, frames: infer.Frames, prompts: dict, device: torch.device
) -> dict[str, Callable[[], None]]:
    """Predictor, engine and MoSAM on one random SAM 2, each running the whole video."""
    base = infer.random_sam2(size)
    engine_model = VideoSAM(copy.deepcopy(base)).to(device)
    parts = infer.MOSAM_VARIANTS[infer.ALL_PARTS]
    mosam = MoSAMTracker(copy.deepcopy(base), **parts).eval().to(device)
    predictor = build_sam2(infer.SIZES[size], target=infer.PREDICTOR).eval()
    predictor.load_state_dict(base.state_dict())
    predictor = predictor.to(device)
    loaded = (frames.images[: frames.num_frames], *infer.VIDEO_SIZE)
    rule = build_tracker({"name": "sam2"})

    def engine(model: VideoSAM) -> Callable[[], None]:
        def run() -> None:
            for _ in VideoPropagator(model, rule).propagate(frames, prompts):
                pass

        return run

    def run_predictor() -> None:
        with mock.patch(f"{infer.PREDICTOR_MODULE}.load_video_frames", return_value=loaded):
            state = predictor.init_state("preloaded")
        with (
            torch.inference_mode(),
            mock.patch(f"{infer.PREDICTOR_MODULE}.tqdm", lambda it, **_: it),
        ):
            for oid, mask in prompts[0].items():
                predictor.add_new_mask(state, 0, oid, mask)
            for _ in predictor.propagate_in_video(state):
                pass

    return {
        "SAM2VideoPredictor": run_predictor,
        "engine": engine(engine_model),
        "MoSAM, all parts": engine(mosam),
    }


def per_frame_ms(
    runners: dict[str, Callable[[], None]], num_frames: int, repeats: int, device: torch.device,
    precision: str,
) -> dict[str, float]:  # fmt: skip
    """Median ms per frame of each runner, interleaved repeats after one warm-up each."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    with precision_context(device, precision):
        for run in runners.values():
            run()
        for _ in range(repeats):
            for name, run in runners.items():
                synchronize(device)
                start = time.perf_counter()
                run()
                synchronize(device)
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) / num_frames for name, t in times.items()}


def training_step(size: str, clip_len: int, device: torch.device, work: Path) -> dict[str, float]:
    """Seconds of one frozen-base MoSAM step (after a warm-up step) and the peak memory."""
    root = work / "synthetic"
    ensure_synthetic(root, seed=0, progress=False, workers=1, **train.SYNTHETIC)
    batches, _ = train.draw_batches(size, root, 2, clip_len, 1, flow=True)
    batches = [b.to(device) for b in batches]
    module, clip = train.build_module("mosam", size)
    module = module.to(device)
    stepper = train.Stepper(module, clip, total_steps=10)
    precision = "bf16" if device.type == "cuda" else "32"
    with precision_context(device, precision):
        stepper.step(batches[0])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        start = time.perf_counter()
        stepper.step(batches[1])
        synchronize(device)
        seconds = time.perf_counter() - start
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else train.max_rss_mb()
    )
    return {"s_per_step": seconds, "peak_mib": peak, "precision": precision}


def loader_clips_per_s(image_size: int, clip_len: int, clips: int, work: Path) -> float:
    """One worker (one thread) drawing MoSAM's training clips: Farneback at 256 px."""
    root = work / "DAVIS"
    write_jpeg_video(root)
    ds = ClipDataset(
        read_split("davis", root, "train"), clip_len=clip_len, max_skip=4, max_objects=3,
        transform=build_train_transform(image_size), samples_per_epoch=clips + 1,
        flow=FarnebackFlow(max_side=256),
    )  # fmt: skip
    ds[0]
    start = time.perf_counter()
    for i in range(1, clips + 1):
        ds[i]
    return clips / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--clips", type=int, default=4, help="clips timed for the loader")
    p.add_argument("--tiny", action="store_true", help="micro SAM 2, a few frames (CPU dry run)")
    args = p.parse_args(argv)
    size, image_size = ("micro", 128) if args.tiny else ("tiny", 1024)
    if args.tiny:
        args.frames, args.repeats, args.clip_len, args.clips = 4, 1, 3, 1
    device = torch.device(args.device)
    cv2.setNumThreads(1)
    console = Console(width=120)
    images, prompts = infer.synthetic_video(args.frames, 2, image_size)
    frames = infer.Frames(images.to(device), args.frames)
    runners = frame_runners(size, frames, prompts, device)
    result: dict[str, Any] = {"device": str(device), "size": size, "frames": args.frames}
    for precision in ("bf16", "32"):
        if precision == "bf16" and device.type != "cuda":
            continue
        console.print(f"per-frame times, {precision} ...", highlight=False)
        result[f"ms_per_frame_{precision}"] = per_frame_ms(
            runners, args.frames, args.repeats, device, precision
        )
    with tempfile.TemporaryDirectory() as tmp:
        console.print("training step ...", highlight=False)
        result["train_step"] = training_step(size, args.clip_len, device, Path(tmp))
        console.print("data loader ...", highlight=False)
        result["loader_clips_per_s"] = loader_clips_per_s(
            image_size, args.clip_len, args.clips, Path(tmp)
        )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    table = Table(title=f"GPU check on {name}: SAM 2.1 {size} at {image_size} px, random weights")
    for col in ("what", "value"):
        table.add_column(col)
    for precision in ("bf16", "32"):
        for what, ms in result.get(f"ms_per_frame_{precision}", {}).items():
            table.add_row(f"{what}, {precision}: ms / frame", f"{ms:.2f}")
    step = result["train_step"]
    table.add_row(
        f"MoSAM training step, {args.clip_len}-frame clip, {step['precision']}: s",
        f"{step['s_per_step']:.3f}",
    )
    memory = "device peak" if device.type == "cuda" else "process peak RSS"
    table.add_row(f"MoSAM training step: {memory}, MiB", f"{step['peak_mib']:.0f}")
    table.add_row(
        "data loader, one worker (Farneback 256 px): clips / s",
        f"{result['loader_clips_per_s']:.2f}",
    )
    console.print(table)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
