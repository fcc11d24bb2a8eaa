"""Training-step cost: a full SAM 2 fine-tune (`model=sam2`) against frozen-base MoSAM
(`model=mosam`), on the same preloaded clips.

    python -m mosam_train.bench.train [--sizes micro,tiny] [--clip-len 4] [--steps 2]
        [--repeats 5] [--batch-size 2] [--max-objects 2] [--activation-checkpointing]
        [--workdir DIR] [--tiny]

Both modules are built as `python train.py model=<sam2|mosam> sam2=<size>` builds them
(Hydra compose of configs/train.yaml, random weights). The clips are drawn once by the
training DataLoader of that config (the synthetic set, `num_workers=0`), with the optical
flow MoSAM's config asks for computed then, so no data worker or Farneback competes with
the step; the loader is timed on its own (seconds per batch without and with the flow).

A step is what Lightning runs for `training_step`: the module's `training_step` (forward
and loss), backward, gradient clipping at the trainer config's `gradient_clip_val`, and the
AdamW step and schedule of the module's own `optimizer_config`. Times are the median of
`--repeats` repeats, the two variants interleaved (their order alternating), each repeat
`--steps` steps after one warm-up step; peak memory is the max RSS of a fresh process per
variant that loads the same clips and runs the same steps (`max_rss_mb`: VmHWM on Linux,
where `resource.getrusage` would include this process's RSS at the fork), beside its RSS
before the first step (imports, model, clips).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from mosam_train.data.synthetic import ensure_synthetic
from mosam_train.data.video import ClipBatch
from mosam_train.lit.module import MoSAMModule
from mosam_train.startup import compose_config

SIZES = {"micro": "micro", "micro_wide": "micro_wide", "tiny": "sam2.1_hiera_tiny"}  # name: sam2=
VARIANTS = ("sam2", "mosam")  # model= configs: the fine-tune, frozen-base MoSAM
LABELS = {"sam2": "SAM 2 fine-tune", "mosam": "MoSAM, frozen SAM 2"}
SYNTHETIC = dict(num_train=8, num_val=1, train_frames=16, val_frames=16)


def compose_train(variant: str, size: str, *overrides: str) -> DictConfig:
    """configs/train.yaml as `python train.py model=<variant> sam2=<size>` composes it,
    without the default experiment (which would pick the model)."""
    return compose_config(
        "train", ["~experiment", f"model={variant}", f"sam2={SIZES[size]}", *overrides]
    )


def build_module(
    variant: str, size: str, checkpointing: bool = False, seed: int = 0
) -> tuple[MoSAMModule, float]:
    """The model config's module (random weights, train mode) and the trainer config's
    gradient clipping value; `checkpointing`: `model.activation_checkpointing=true`."""
    cfg = compose_train(variant, size, f"model.activation_checkpointing={checkpointing}")
    torch.manual_seed(seed)
    module: MoSAMModule = instantiate(cfg.model, _convert_="all")
    module.train()
    return module, float(cfg.trainer.gradient_clip_val or 0.0)


def draw_batches(
    size: str,
    root: Path,
    count: int,
    clip_len: int,
    batch_size: int,
    flow: bool,
    max_objects: int = 2,
) -> tuple[list[ClipBatch], float]:
    """The first `count` batches of the training DataLoader of `model=mosam` (with its
    optical flow) or `model=sam2` (none), and the mean seconds per batch."""
    cfg = compose_train(
        "mosam" if flow else "sam2",
        size,
        f"data.root={root}",
        "data.synthetic=false",
        "data.num_workers=0",
        f"data.clip_len={clip_len}",
        f"data.batch_size={batch_size}",
        f"data.max_objects={max_objects}",
        "data.max_skip=1",
        f"data.samples_per_epoch={count * batch_size}",
        "data.val_max_videos=1",
        f"data.flow={'${model.flow}' if flow else 'null'}",
    )
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    loader = iter(dm.train_dataloader())
    start_s = time.perf_counter()
    batches = [next(loader) for _ in range(count)]
    return batches, (time.perf_counter() - start_s) / count


def save_batches(batches: list[ClipBatch], path: Path) -> None:
    torch.save([{f.name: getattr(b, f.name) for f in fields(b)} for b in batches], path)


def load_batches(path: Path) -> list[ClipBatch]:
    return [ClipBatch(**b) for b in torch.load(path, weights_only=True)]


class Stepper:
    """One optimizer step of a module as Lightning runs it (see the module docstring)."""

    def __init__(self, module: MoSAMModule, clip: float, total_steps: int) -> None:
        self.module, self.clip = module, clip
        cfg = module.optimizer_config(total_steps)
        self.optimizer = cfg["optimizer"]
        self.scheduler = cfg["lr_scheduler"]["scheduler"]
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.count = 0

    def step(self, batch: ClipBatch) -> float:
        with warnings.catch_warnings():  # self.log without a Trainer: a no-op that warns
            warnings.filterwarnings("ignore", message=".*self.log.*")
            loss = self.module.training_step(batch, self.count)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        self.scheduler.step()
        self.count += 1
        return float(loss.detach())

    def seconds(self, batches: list[ClipBatch], steps: int) -> float:
        """Mean seconds per step over `steps` steps cycling through `batches`."""
        start_s = time.perf_counter()
        for i in range(steps):
            self.step(batches[(self.count + i) % len(batches)])
        return (time.perf_counter() - start_s) / steps


def _proc_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status in MiB (Linux), else None."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    return None


def max_rss_mb() -> float:
    """This process's peak resident memory (MiB). Linux: VmHWM, the peak of this process's
    own memory since its exec; getrusage's ru_maxrss would also count the parent's RSS at
    fork time, which Linux carries across exec."""
    hwm = _proc_status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's resident memory now (Linux; elsewhere its peak so far)."""
    rss = _proc_status_mb("VmRSS")
    return rss if rss is not None else max_rss_mb()


def child(variant: str, size: str, batches_path: Path, steps: int, checkpointing: bool) -> None:
    """In a fresh process: load the clips, build the module, run `steps` steps; print the
    RSS before the first step and the max RSS after the last (MiB) as JSON."""
    batches = load_batches(batches_path)
    module, clip = build_module(variant, size, checkpointing)
    stepper = Stepper(module, clip, steps)
    before = rss_mb()
    stepper.seconds(batches, steps)
    print(json.dumps({"before_mb": before, "peak_mb": max_rss_mb()}))


def measure_memory(
    variant: str, size: str, batches_path: Path, steps: int, checkpointing: bool
) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-m", "mosam_train.bench.train", "--child", variant,
         "--sizes", size, "--batches-file", str(batches_path), "--steps", str(steps),
         *(["--activation-checkpointing"] if checkpointing else [])],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"the {variant} {size} memory run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_size(size: str, args: argparse.Namespace, work: Path, console: Console) -> dict[str, Any]:
    root = ensure_synthetic(work / "synthetic", seed=0, progress=False, workers=1, **SYNTHETIC)
    count = max(2, args.batches)
    sizes = (args.clip_len, args.batch_size)
    _, loader_s = draw_batches(size, root, count, *sizes, False, args.max_objects)
    batches, loader_flow_s = draw_batches(size, root, count, *sizes, True, args.max_objects)
    console.print(
        f"{size}: loader {loader_s:.3f} s/batch, with flow {loader_flow_s:.3f} s/batch",
        highlight=False,
    )
    batches_path = work / f"batches_{size}_{args.clip_len}.pt"
    save_batches(batches, batches_path)
    steppers = {}
    for variant in VARIANTS:
        module, clip = build_module(variant, size, args.activation_checkpointing)
        steppers[variant] = Stepper(module, clip, (args.steps + 1) * args.repeats)
        steppers[variant].seconds(batches, 1)  # warm-up: allocator, lazy init
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.repeats):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            times[variant].append(steppers[variant].seconds(batches, args.steps))
        console.print(
            f"{size} repeat {r + 1}/{args.repeats}: "
            + ", ".join(f"{v} {times[v][-1]:.3f} s/step" for v in VARIANTS),
            highlight=False,
        )
    result: dict[str, Any] = {
        "loader_s_per_batch": loader_s,
        "loader_flow_s_per_batch": loader_flow_s,
    }
    for variant in VARIANTS:
        params = steppers[variant].params
        memory = measure_memory(
            variant, size, batches_path, args.steps, args.activation_checkpointing
        )
        result[variant] = {
            "s_per_step": statistics.median(times[variant]),
            "s_per_step_all": times[variant],
            "trained_params": sum(p.numel() for p in params),
            **memory,
        }
    result["ratio_time"] = result["mosam"]["s_per_step"] / result["sam2"]["s_per_step"]
    result["ratio_peak"] = result["mosam"]["peak_mb"] / result["sam2"]["peak_mb"]
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="micro,tiny", help=f"comma-separated: {', '.join(SIZES)}")
    p.add_argument("--clip-len", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument(
        "--max-objects",
        type=int,
        default=2,
        help="objects per clip (at most; memory grows with it)",
    )
    p.add_argument("--batches", type=int, default=4, help="distinct preloaded batches")
    p.add_argument("--steps", type=int, default=2, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--activation-checkpointing",
        action="store_true",
        help="both variants with model.activation_checkpointing=true (less memory at 1024 px)",
    )
    p.add_argument("--workdir", type=Path, default=None, help="keep the data here")
    p.add_argument("--tiny", action="store_true", help="micro, 3-frame clips, one repeat")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--batches-file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.sizes, args.batches_file, args.steps, args.activation_checkpointing)
        return {}
    if args.tiny:
        args.sizes, args.clip_len, args.batch_size = "micro", 3, 1
        args.batches, args.steps, args.repeats = 2, 1, 1
    sizes = args.sizes.split(",")
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        p.error(f"--sizes {','.join(unknown)}: unknown; choose from {', '.join(SIZES)}")
    console = Console(width=120)  # the table is meant to be pasted whole
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for size in sizes:
            results[size] = bench_size(size, args, work, console)
    table = Table(
        title=f"one optimizer step, {args.batch_size} x {args.clip_len}-frame clips of up to "
        f"{args.max_objects} object(s){', activation checkpointing' if args.activation_checkpointing else ''}, CPU, "
        f"{torch.get_num_threads()} thread(s); median of {args.repeats} interleaved repeats"
    )
    for col in ("size", "model", "trained params", "s / step", "MoSAM / fine-tune",
                "RSS before step, MiB", "peak RSS, MiB", "loader s / batch"):  # fmt: skip
        table.add_column(col)
    for size, r in results.items():
        for variant in VARIANTS:
            v = r[variant]
            mosam = variant == "mosam"
            table.add_row(
                size, LABELS[variant], f"{v['trained_params']:,}", f"{v['s_per_step']:.3f}",
                f"{r['ratio_time']:.2f} (peak {r['ratio_peak']:.2f})" if mosam else "1.00",
                f"{v['before_mb']:.0f}", f"{v['peak_mb']:.0f}",
                f"{r['loader_flow_s_per_batch' if mosam else 'loader_s_per_batch']:.3f}"
                + (" (flow)" if mosam else ""),
            )  # fmt: skip
    console.print(table)
    summary = {"bench": "train", "clip_len": args.clip_len, "batch_size": args.batch_size,
               "max_objects": args.max_objects,
               "activation_checkpointing": args.activation_checkpointing,
               "repeats": args.repeats, "steps": args.steps, "sizes": results}  # fmt: skip
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
