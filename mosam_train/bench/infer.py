"""Inference speed and memory, side by side: SAM 2's own video predictor, our engine, MoSAM
with each part on and off, and every tracker rule (but those that read ground truth, which
the benchmark's video has not), in one process.

    python -m mosam_train.bench.infer [--sizes micro,tiny] [--objects 2] [--frames 60]
        [--frames-1024 16] [--repeats 5] [--memory-frames 100,1000] [--profile]
        [--variants engine,predictor,mosam,mosam-no-flow] [--modes end-to-end,precomputed]
        [--multimask] [--memory-variants engine,mosam,rule:samurai] [--tiny]

Seconds per frame are the median of `--repeats` interleaved repeats (every variant once per
repeat, so a busy moment hits all of them), after one warm-up run each; frames are
preloaded (a synthetic video, preprocessed once), weights are fresh random ones (seed 0;
the object-score head is biased towards "object" so masks are non-empty, as in the tests'
micro SAM 2). SAM2VideoPredictor is built as the parity test builds it and loaded with the
same state dict. `--variants` picks variants by key (`VARIANT_KEYS`, and `rule:<name>` for
a tracker rule; the engine, the ratios' base, is always run). `--multimask` builds every
size tracking with SAM 2's three candidate masks (the official configs do already; the
micro base does not), so the rules that choose among them run on micro too.

Optical flow overlaps the model: the engine computes a host provider's (Farneback's) flow
of frame t + 1 in a worker thread while the model runs frame t, which is how it runs on a
GPU machine (flow on CPU cores beside the GPU); one-threaded torch leaves this machine's
second core to it. So "ms / frame" and every "x engine" ratio are the per-frame wall time,
with the flow overlapped; the flow column is the flow's own cost (its time measured in the
worker thread), and "flow wait excluded" removes only the time the model's thread spent
waiting for a flow result (all of the flow's time for a provider that runs inline).

At 1024 px (SAM 2.1 tiny) a
second mode feeds every variant image features computed beforehand, so the ratio shows
the cost of the tracking step alone (`--modes` picks either or both); there
`--frames-1024` frames are run (MoSAM's default selection fills its six memory slots from
frame 13 on).

Memory (on the first 128 px size of `--sizes`, micro or micro_wide): the peak RSS
(`ru_maxrss`) of a fresh subprocess that runs one variant over `--memory-frames` frames
(the synthetic video played back and forth), next to its RSS before propagating: the
engine, MoSAM (all parts) and the tracker rules of `--memory-variants` (keys as
`--variants`). Flat memory means the peak does not grow with
the video.

`--profile` adds MoSAM's per-frame cost by component (keypoints, forecast and sparse
encoder, dense encoder, heads, memory selection and pixel bias, bookkeeping, and SAM 2's
own parts), exclusive wall time per frame of the model's thread, for each size; the flow's
own time in its worker thread is listed beside them, outside the total, and the model
thread's wait for it inside.

Run it on a quiet machine, one thread (`OMP_NUM_THREADS=1`): the figures are ratios, the
machine's absolute speed is not the point. The last line is the whole result as JSON, with
the machine it ran on (`machine`: CPU, platform, torch, commit) and its arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from sam2.modeling.sam2_base import SAM2Base

from mosam_train.data.synthetic import make_video
from mosam_train.images import preprocess_frame
from mosam_train.inference.engine import FlowAhead, VideoPropagator
from mosam_train.models import mosam as mosam_module
from mosam_train.models.mosam import MoSAMTracker
from mosam_train.models.motion import prompting as prompting_module
from mosam_train.models.sam2_builder import build_sam2, load_model_config
from mosam_train.models.video_sam import VideoSAM
from mosam_train.trackers import build_tracker, tracker_names

PREDICTOR_MODULE = "sam2.sam2_video_predictor"
PREDICTOR = f"{PREDICTOR_MODULE}.SAM2VideoPredictor"
SIZES = {"micro": "sam2.1_micro", "micro_wide": "sam2.1_micro_wide", "tiny": "sam2.1_hiera_tiny"}
#: the 128 px sizes: every variant, run end to end, with memory curves
SMALL_SIZES = ("micro", "micro_wide")
VIDEO_SIZE = (240, 320)  # (H, W) of the synthetic video; logits are returned at this size
DEFAULT_FLOW = {"name": "farneback", "max_side": 256}  # configs/model/mosam.yaml
ENGINE = "engine (tracker=sam2)"
ALL_PARTS = "MoSAM, all parts (Farneback)"
NO_FLOW = "MoSAM, no dense branch (no flow)"


def _mosam(sparse: bool, dense: bool, frame: bool, pixel: bool) -> dict[str, Any]:
    mgp = {"sparse": sparse, "dense": dense} if sparse or dense else None
    stms = {"frame": frame, "pixel": pixel} if frame or pixel else None
    return {"mgp": mgp, "stms": stms, "flow": DEFAULT_FLOW}


# name -> MoSAM parts; every other part at configs/model/mosam.yaml's defaults
MOSAM_VARIANTS = {
    ALL_PARTS: _mosam(True, True, True, True),
    NO_FLOW: _mosam(True, False, True, True),
    "MoSAM, no sparse branch": _mosam(False, True, True, True),
    "MoSAM, no frame head (recency)": _mosam(True, True, False, True),
    "MoSAM, no pixel filter": _mosam(True, True, True, False),
    "MoSAM, MGP only (no ST-MS)": _mosam(True, True, False, False),
    "MoSAM, sparse only": _mosam(True, False, False, False),
    "MoSAM, dense only": _mosam(False, True, False, False),
    "MoSAM, ST-MS only (no flow)": _mosam(False, False, True, True),
}
# At 1024 px on a CPU one frame takes seconds: the variants the targets are about.
MOSAM_VARIANTS_1024 = (ALL_PARTS, NO_FLOW)
PREDICTOR_NAME = "SAM2VideoPredictor"
# --variants keys -> variant names (tracker rules other than SAM 2's: "rule:<name>")
VARIANT_KEYS = {
    "predictor": PREDICTOR_NAME,
    "engine": ENGINE,
    **{
        f"mosam{suffix}": name
        for suffix, name in zip(
            (
                "",
                "-no-flow",
                "-no-sparse",
                "-no-frame-head",
                "-no-pixel",
                "-mgp-only",
                "-sparse-only",
                "-dense-only",
                "-stms-only",
            ),
            MOSAM_VARIANTS,
            strict=True,
        )
    },
}


# ------------------------------------------------------------------------------ inputs
class Frames:
    """Preloaded preprocessed frames [T, 3, S, S]; frame t >= T plays the video back and
    forth (for long memory runs without holding every frame)."""

    frame_step = 1

    def __init__(self, images: torch.Tensor, num_frames: int) -> None:
        self.images = images
        self.num_frames = num_frames
        self.height, self.width = VIDEO_SIZE

    def image(self, t: int) -> torch.Tensor:
        n = len(self.images)
        period = max(1, 2 * (n - 1))
        k = t % period
        return self.images[k if k < n else period - k]


def synthetic_video(
    num_frames: int, objects: int, image_size: int
) -> tuple[torch.Tensor, dict[int, dict[int, np.ndarray]]]:
    """Preprocessed frames [T, 3, S, S] and first-frame mask prompts of `objects` objects."""
    for seed in range(100):
        frames, labels, _ = make_video(np.random.default_rng(seed), num_frames, *VIDEO_SIZE, None)
        ids = [int(i) for i in np.unique(labels[0]) if i != 0]
        if len(ids) >= objects:
            images = torch.stack([preprocess_frame(f, image_size) for f in frames])
            return images, {0: {oid: labels[0] == oid for oid in ids[:objects]}}
    raise RuntimeError(f"no synthetic video with {objects} objects on its first frame")


def sam2_overrides(multimask: bool) -> dict[str, Any]:
    """The model config overrides of `--multimask`: tracking with three candidate masks."""
    return {"multimask_output_for_tracking": True} if multimask else {}


def random_sam2(size: str, multimask: bool = False) -> SAM2Base:
    """Seed-0 random SAM 2 of `size`, its object-score head biased towards "object" (a
    random head says "no object" everywhere, which would skip MoSAM's keypoints);
    `multimask`: tracking with three candidate masks (the same weights)."""
    torch.manual_seed(0)
    sam = build_sam2(SIZES[size], overrides=sam2_overrides(multimask)).eval()
    with torch.no_grad():
        sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(5.0)
    return sam


# ------------------------------------------------------------------------------ variants
class TimedFlow:
    """A flow provider that adds its own wall time (in whichever thread runs it) to
    `seconds`; it runs where the provider it wraps runs (`runs_on_host`)."""

    def __init__(self, flow: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.flow = flow
        self.runs_on_host = bool(getattr(flow, "runs_on_host", False))
        self.seconds = 0.0

    def __call__(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.flow(current, previous)
        self.seconds += time.perf_counter() - start
        return out


@dataclass
class Run:
    """One run's seconds: wall time, the flow's own time, the model thread's wait for it."""

    seconds: float
    flow: float = 0.0
    flow_wait: float = 0.0


@dataclass
class Variant:
    """One way to run the video."""

    name: str
    run: Callable[[], Run]
    runs: list[Run] = field(default_factory=list)


@contextlib.contextmanager
def timed_flow_waits() -> Iterator[list[float]]:
    """Seconds the model's thread spends in `FlowAhead.result` (waiting for a host flow)."""
    waits = [0.0]
    result = FlowAhead.result

    def timed(self: FlowAhead) -> torch.Tensor:
        start = time.perf_counter()
        try:
            return result(self)
        finally:
            waits[0] += time.perf_counter() - start

    with mock.patch.object(FlowAhead, "result", timed):
        yield waits


def engine_variant(
    name: str, model: VideoSAM, frames: Frames, prompts: dict, rule: str = "sam2"
) -> Variant:
    flow = None
    if model.flow_provider is not None:
        flow = model.flow_provider = TimedFlow(model.flow_provider)
    tracker = build_tracker({"name": rule})

    def run() -> Run:
        if flow is not None:
            flow.seconds = 0.0
        engine = VideoPropagator(model, tracker)
        with timed_flow_waits() as waits:
            start = time.perf_counter()
            for _ in engine.propagate(frames, prompts):
                pass
            seconds = time.perf_counter() - start
        if flow is None:
            return Run(seconds)
        # an inline provider's whole time is spent in the model's thread
        return Run(seconds, flow.seconds, waits[0] if flow.runs_on_host else flow.seconds)

    return Variant(name, run)


def predictor_variant(
    size: str, sam: SAM2Base, frames: Frames, prompts: dict, multimask: bool = False
) -> Variant:
    """SAM2VideoPredictor on the same preloaded frames: `init_state` (untimed, its frame-0
    feature cache emptied) then `add_new_mask` per object and `propagate_in_video`."""
    predictor = build_sam2(SIZES[size], overrides=sam2_overrides(multimask), target=PREDICTOR)
    predictor.eval()
    predictor.load_state_dict(sam.state_dict())
    loaded = (frames.images[: frames.num_frames], *VIDEO_SIZE)
    if "forward_image" in vars(sam):  # features precomputed: the same cache
        predictor.forward_image = sam.forward_image

    def run() -> Run:
        with mock.patch(f"{PREDICTOR_MODULE}.load_video_frames", return_value=loaded):
            state = predictor.init_state("preloaded")
        state["cached_features"] = {}
        start = time.perf_counter()
        with torch.inference_mode(), mock.patch(f"{PREDICTOR_MODULE}.tqdm", lambda it, **_: it):
            for oid, mask in prompts[0].items():
                predictor.add_new_mask(state, 0, oid, mask)
            for _ in predictor.propagate_in_video(state):
                pass
        return Run(time.perf_counter() - start)

    return Variant(PREDICTOR_NAME, run)


def precompute_features(sam: SAM2Base, images: torch.Tensor) -> Callable[[torch.Tensor], dict]:
    """`forward_image` replaced by a lookup of each preloaded frame's backbone output
    (computed here once; the position encodings, equal on every frame, are shared)."""
    cache: dict[int, dict[str, Any]] = {}
    pos = None
    with torch.inference_mode():
        for image in images:
            out = sam.forward_image(image[None])
            if pos is None:
                pos = out["vision_pos_enc"]
            out["vision_pos_enc"] = pos
            cache[image.data_ptr()] = out
    return lambda batch: cache[batch.data_ptr()]


def rule_keys(size: str, multimask: bool = False) -> list[str]:
    """The tracker rules other than SAM 2's that run as configured on a video without
    ground truth (an oracle's bound is eval's business, not a speed) on `size`'s base: a
    rule that chooses among SAM 2's three candidates only where the base tracks with them
    (the official configs, or any with `multimask`; not the micro base)."""
    model_cfg = load_model_config(SIZES[size], sam2_overrides(multimask))
    candidates = bool(model_cfg.get("multimask_output_for_tracking", False))
    rules = {name: build_tracker({"name": name}) for name in tracker_names() if name != "sam2"}
    return [
        f"rule:{name}"
        for name, rule in rules.items()
        if not rule.needs_ground_truth and (candidates or not rule.needs_candidates)
    ]


def variant_name(key: str) -> str:
    """The name a variant key's row has in the tables and the JSON."""
    if key.startswith("rule:"):
        return f"engine, tracker={key.removeprefix('rule:')}"
    return VARIANT_KEYS[key]


def variant_keys(size: str, multimask: bool = False) -> list[str]:
    """Every variant key of `size`, in table order (at 1024 px, MoSAM's are the targets')."""
    rules = rule_keys(size, multimask)
    mosam = [k for k, name in VARIANT_KEYS.items() if name in MOSAM_VARIANTS]
    if size not in SMALL_SIZES:
        mosam = [k for k in mosam if VARIANT_KEYS[k] in MOSAM_VARIANTS_1024]
    return ["predictor", "engine", *rules, *mosam]


def select_keys(
    size: str, wanted: str | None, multimask: bool = False, option: str = "--variants"
) -> list[str]:
    """`--variants` (comma list of keys; None: all of `size`) -> keys in table order, the
    engine (the ratios' base) always included; `option` names the setting in errors."""
    keys = variant_keys(size, multimask)
    if wanted is None:
        return keys
    asked = {k.strip() for k in wanted.split(",") if k.strip()}
    rules = rule_keys(size, multimask)
    order = ["predictor", "engine", *rules, *[k for k in VARIANT_KEYS if k.startswith("mosam")]]
    unknown = sorted(asked - set(order))
    if unknown:
        raise SystemExit(
            f"{option}: unknown key(s) {', '.join(unknown)}. Fix: use keys among "
            f"{', '.join(order)} (a rule that chooses among three candidate masks needs a size "
            f"that tracks with them, or --multimask)"
        )
    return [k for k in order if k in asked | {"engine"}]


def build_variants(
    size: str,
    frames: Frames,
    prompts: dict,
    precomputed: bool,
    keys: list[str],
    multimask: bool = False,
) -> list[Variant]:
    """The variants of `keys` (predictor, engine, other tracker rules, MoSAM variants),
    each on its own copy of one random SAM 2 (MoSAM hooks SAM 2's modules)."""
    base = random_sam2(size, multimask)
    if precomputed:
        base.forward_image = precompute_features(base, frames.images[: frames.num_frames])
    variants = []
    for key in keys:
        if key == "predictor":
            variants.append(predictor_variant(size, base, frames, prompts, multimask))
        elif key == "engine" or key.startswith("rule:"):
            rule = key.removeprefix("rule:") if key != "engine" else "sam2"
            name = variant_name(key)
            model = VideoSAM(copy.deepcopy(base))
            variants.append(engine_variant(name, model, frames, prompts, rule))
        else:
            name = VARIANT_KEYS[key]
            model = MoSAMTracker(copy.deepcopy(base), **MOSAM_VARIANTS[name]).eval()
            variants.append(engine_variant(name, model, frames, prompts))
    return variants


def measure(variants: list[Variant], repeats: int, console: Console, label: str) -> None:
    """One warm-up run each, then `repeats` rounds of every variant in turn."""
    for v in variants:
        v.run()
    for r in range(repeats):
        for v in variants:
            v.runs.append(v.run())
        console.print(f"{label}: repeat {r + 1}/{repeats} done", highlight=False)


# ------------------------------------------------------------------------------ memory
def memory_child(spec: dict[str, Any]) -> dict[str, float]:
    """Run in a fresh process: RSS before propagating and the peak while propagating, MiB,
    of the variant `spec["key"]` (the engine, a `rule:<name>` or `mosam`, all parts)."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    images, prompts = synthetic_video(spec["base_frames"], spec["objects"], 128)
    frames = Frames(images, spec["frames"])
    sam = random_sam2(spec.get("size", "micro"), spec.get("multimask", False))
    key = spec["key"]
    if key == "mosam":
        model, rule = MoSAMTracker(sam, **MOSAM_VARIANTS[ALL_PARTS]), "sam2"
    else:
        model, rule = VideoSAM(sam), key.removeprefix("rule:") if key != "engine" else "sam2"
    engine = VideoPropagator(model.eval(), build_tracker({"name": rule}))
    # reset the peak to the current RSS (Linux >= 4.0), so setup's transient peak (the
    # synthetic video, imports) cannot hide growth during propagation
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for _ in engine.propagate(frames, prompts):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"before_mib": before, "peak_mib": peak, "entries": engine.memory_entries()}


def memory_curve(
    lengths: list[int],
    objects: int,
    base_frames: int,
    console: Console,
    keys: tuple[str, ...] = ("engine", "mosam"),
    multimask: bool = False,
    size: str = "micro",
) -> dict[str, dict[int, dict[str, float]]]:
    """Peak RSS of each variant of `keys` (engine, `rule:<name>`, `mosam`) at each length,
    on `size` (a 128 px one)."""
    curves: dict[str, dict[int, dict[str, float]]] = {}
    for key in keys:
        name = ALL_PARTS if key == "mosam" else variant_name(key)
        for n in lengths:
            spec = {
                "frames": n,
                "objects": objects,
                "base_frames": base_frames,
                "key": key,
                "multimask": multimask,
                "size": size,
            }
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mosam_train.bench.infer",
                    "--memory-child",
                    json.dumps(spec),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"memory run {name}, {n} frames failed:\n{proc.stderr[-3000:]}")
            curves.setdefault(name, {})[n] = json.loads(proc.stdout.strip().splitlines()[-1])
            console.print(f"memory: {name}, {n} frames: {curves[name][n]}", highlight=False)
    return curves


# ------------------------------------------------------------------------------ profile
class ComponentTimer:
    """Exclusive wall time per component: a component's time excludes the components
    called inside it, so the parts add up to the whole."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[list[float]] = []

    def wrap(self, name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([0.0])
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = self._stack.pop()[0]
                self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - inner
                if self._stack:
                    self._stack[-1][0] += elapsed

        return timed

    @contextlib.contextmanager
    def patch(self, obj: Any, attr: str, name: str) -> Iterator[None]:
        with mock.patch.object(obj, attr, self.wrap(name, getattr(obj, attr))):
            yield


def _wrap_hooks(timer: ComponentTimer, hooks: dict, name: str) -> None:
    for key, hook in list(hooks.items()):
        hooks[key] = timer.wrap(name, hook)


FLOW_OWN = "flow (Farneback), in its own thread: not in the total"
FLOW_WAIT = "flow: the model's thread waiting for it"


def profile_mosam(
    size: str, frames: Frames, prompts: dict, precomputed: bool, multimask: bool = False
) -> dict[str, dict[str, float]]:
    """ms per frame by component for the engine and MoSAM (all parts), one run each after a
    warm-up. Components are exclusive times in the model's thread and add up to its total;
    the flow, computed in a worker thread meanwhile, is reported beside them."""
    result = {}
    for name, parts in ((ENGINE, None), (ALL_PARTS, MOSAM_VARIANTS[ALL_PARTS])):
        sam = random_sam2(size, multimask)
        if precomputed:
            sam.forward_image = precompute_features(sam, frames.images[: frames.num_frames])
        model = (MoSAMTracker(sam, **parts) if parts else VideoSAM(sam)).eval()
        flow = None
        if model.flow_provider is not None:
            flow = model.flow_provider = TimedFlow(model.flow_provider)
        engine = VideoPropagator(model)
        for _ in engine.propagate(frames, prompts):  # warm-up
            pass
        timer = ComponentTimer()
        targets: list[tuple[Any, str, str]] = [
            (sam, "forward_image", "SAM 2: image encoder"),
            (sam, "_prepare_memory_conditioned_features", "SAM 2: memory assembly"),
            (sam.memory_attention, "forward", "SAM 2: memory attention"),
            (sam.sam_prompt_encoder, "forward", "SAM 2: prompt encoder"),
            (sam.sam_mask_decoder, "forward", "SAM 2: mask decoder"),
            (sam, "_encode_new_memory", "SAM 2: memory encoder"),
            (engine, "_prune", "bookkeeping: memory bank"),
            (engine, "_compact", "bookkeeping: memory bank"),
        ]
        if parts:
            mgp, stms = model.mgp, model.stms
            _wrap_hooks(
                timer, sam.sam_prompt_encoder._forward_hooks, "MoSAM: prompt + memory hooks"
            )
            _wrap_hooks(
                timer, sam.memory_attention._forward_pre_hooks, "MoSAM: prompt + memory hooks"
            )
            targets += [
                (FlowAhead, "result", FLOW_WAIT),
                (mosam_module, "mask_keypoints", "MoSAM: keypoints"),
                (model, "_motion_prompt", "MoSAM: motion history + prev mask"),
                (mgp.sparse, "forward", "MoSAM: forecast + sparse encoder"),
                (prompting_module, "forecast_heatmap", "MoSAM: forecast heatmap"),
                (prompting_module, "warp_backward", "MoSAM: warp prev mask"),
                (mgp.dense, "forward", "MoSAM: dense encoder"),
                (mosam_module, "_soft_iou", "MoSAM: frame + pixel heads"),
                (stms.frame_head, "forward", "MoSAM: frame + pixel heads"),
                (stms.pixel_head, "forward", "MoSAM: frame + pixel heads"),
                (model, "_selected_memory", "MoSAM: memory selection + pixel bias"),
                (stms.pixel_head, "bias", "MoSAM: memory selection + pixel bias"),
            ]
        if flow is not None:
            flow.seconds = 0.0
        with contextlib.ExitStack() as stack:
            for obj, attr, label in targets:
                stack.enter_context(timer.patch(obj, attr, label))
            start = time.perf_counter()
            for _ in engine.propagate(frames, prompts):
                pass
            total = time.perf_counter() - start
        ms = {k: 1000 * v / frames.num_frames for k, v in timer.seconds.items()}
        ms["rest (engine loop, upsampling, SAM 2 glue)"] = 1000 * total / frames.num_frames - sum(
            ms.values()
        )
        ms["total"] = 1000 * total / frames.num_frames
        if flow is not None:
            ms[FLOW_OWN] = 1000 * flow.seconds / frames.num_frames
        result[name] = ms
    return result


def profile_table(title: str, profile: dict[str, dict[str, float]]) -> Table:
    engine, mosam = profile[ENGINE], profile[ALL_PARTS]
    table = Table(title=title)
    for col in ("component", "engine ms/frame", "MoSAM ms/frame", "MoSAM % of its total"):
        table.add_column(col)
    keys = sorted(
        set(engine) | set(mosam),
        key=lambda k: (k == FLOW_OWN, k == "total", k.startswith("rest"), k),
    )
    for k in keys:
        e, m = engine.get(k), mosam.get(k)
        share = f"{100 * m / mosam['total']:.1f}" if m is not None else "-"
        table.add_row(
            k, f"{e:.2f}" if e is not None else "-", f"{m:.2f}" if m is not None else "-", share
        )
    return table


# ------------------------------------------------------------------------------ main
def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU model and cores, platform, torch and its
    threads, and the commit of this checkout (None outside a git checkout)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=os.path.dirname(os.path.abspath(__file__)),
            capture_output=True,
            text=True,
            timeout=10,
        )
        if proc.returncode == 0:
            commit = proc.stdout.strip() or None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "commit": commit,
    }


def summarise(variants: list[Variant], num_frames: int) -> dict[str, dict[str, float]]:
    """Medians per frame: wall time (flow overlapped), the flow's own time in its thread,
    the model thread's wait for it, and the wall time without that wait."""
    rows = {}
    for v in variants:
        rows[v.name] = {
            "s_per_frame": statistics.median(r.seconds for r in v.runs) / num_frames,
            "flow_s_per_frame": statistics.median(r.flow for r in v.runs) / num_frames,
            "flow_wait_s_per_frame": statistics.median(r.flow_wait for r in v.runs) / num_frames,
            "no_flow_s_per_frame": statistics.median(r.seconds - r.flow_wait for r in v.runs)
            / num_frames,
        }
    base = rows[ENGINE]["s_per_frame"]
    for row in rows.values():
        row["x_engine"] = row["s_per_frame"] / base
        row["x_engine_without_flow"] = row["no_flow_s_per_frame"] / base
    return rows


def results_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    columns = (
        "variant",
        "ms / frame",
        "flow ms / frame (own thread)",
        "waiting for flow ms / frame",
        "x engine",
        "x engine, flow wait excluded",
    )
    for col in columns:
        table.add_column(col)
    for name, r in rows.items():
        has_flow = r["flow_s_per_frame"] > 0
        table.add_row(
            name,
            f"{1000 * r['s_per_frame']:.2f}",
            f"{1000 * r['flow_s_per_frame']:.2f}" if has_flow else "-",
            f"{1000 * r['flow_wait_s_per_frame']:.2f}" if has_flow else "-",
            f"{r['x_engine']:.3f}",
            f"{r['x_engine_without_flow']:.3f}",
        )
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="micro,tiny", help=f"comma list of: {', '.join(SIZES)}")
    p.add_argument("--objects", type=int, default=2)
    p.add_argument("--frames", type=int, default=60, help="frames per run (128 px sizes)")
    p.add_argument("--frames-1024", type=int, default=16, help="frames per run (tiny, 1024 px)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--memory-frames", default="100,1000", help="comma list; empty: no curve")
    p.add_argument("--profile", action="store_true", help="MoSAM's cost by component")
    p.add_argument(
        "--variants",
        default=None,
        help=f"comma list of variant keys (default: all): {', '.join(VARIANT_KEYS)}, rule:NAME",
    )
    p.add_argument(
        "--modes",
        default="end-to-end,precomputed",
        help="at 1024 px, comma list of: end-to-end, precomputed (image features computed "
        "beforehand); micro runs end to end",
    )
    p.add_argument(
        "--multimask",
        action="store_true",
        help="every size tracks with three candidate masks (micro does not by default)",
    )
    p.add_argument(
        "--memory-variants",
        default="engine,mosam",
        help="comma list of the variants whose peak memory is measured: engine, mosam (all "
        "parts), rule:NAME",
    )
    p.add_argument("--tiny", action="store_true", help="a seconds-long run (the test suite's)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child is not None:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return
    if args.tiny:
        args.sizes, args.frames, args.repeats, args.memory_frames = "micro", 6, 1, "8,16"
    sizes = [s for s in args.sizes.split(",") if s]
    # memory curves on the first 128 px size asked for
    memory_size = next((s for s in sizes if s in SMALL_SIZES), "micro")
    memory_keys = [
        k
        for k in select_keys(memory_size, args.memory_variants, args.multimask, "--memory-variants")
        if k == "engine" or k == "mosam" or k.startswith("rule:")
    ]
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    console = Console(width=120)  # the tables are meant to be pasted whole
    result: dict[str, Any] = {
        "objects": args.objects,
        "repeats": args.repeats,
        "multimask": args.multimask,
        "machine": machine(),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "sizes": {},
    }
    for size in sizes:
        if size not in SIZES:
            raise SystemExit(f"--sizes: unknown size {size!r}; use {', '.join(SIZES)}")
        small = size in SMALL_SIZES
        num_frames = args.frames if small else args.frames_1024
        image_size = 128 if small else 1024
        images, prompts = synthetic_video(num_frames, args.objects, image_size)
        frames = Frames(images, num_frames)
        wanted = {m.strip() for m in args.modes.split(",") if m.strip()}
        if not wanted <= {"end-to-end", "precomputed"}:
            raise SystemExit(
                f"--modes: {args.modes!r}. Fix: a comma list of end-to-end, precomputed"
            )
        modes = [False] if small else [m == "precomputed" for m in sorted(wanted)]
        keys = select_keys(size, args.variants, args.multimask)
        for precomputed in modes:
            mode = "image features precomputed" if precomputed else "end to end"
            label = f"{size} ({image_size} px), {mode}"
            variants = build_variants(size, frames, prompts, precomputed, keys, args.multimask)
            measure(variants, args.repeats, console, label)
            rows = summarise(variants, num_frames)
            title = (
                f"{label}: {args.objects} objects, {num_frames} frames, median of "
                f"{args.repeats} interleaved repeats"
            )
            console.print(results_table(title, rows))
            entry: dict[str, Any] = {"rows": rows, "frames": num_frames}
            if precomputed and ALL_PARTS in rows:
                eng, mos = rows[ENGINE], rows[ALL_PARTS]
                own = mos["no_flow_s_per_frame"] - eng["s_per_frame"]
                entry["mosam_own_cost_pct_of_engine"] = 100 * own / eng["s_per_frame"]
                console.print(
                    f"MoSAM's own cost (all parts, the wait for flow excluded) at 1024 px: "
                    f"{entry['mosam_own_cost_pct_of_engine']:.1f}% of the engine's per-frame "
                    f"time with precomputed features; flow {1000 * mos['flow_s_per_frame']:.1f} "
                    f"ms/frame",
                    highlight=False,
                )
            if args.profile and (precomputed or small):
                entry["profile_ms_per_frame"] = prof = profile_mosam(
                    size, frames, prompts, precomputed, args.multimask
                )
                console.print(profile_table(f"{label}: cost by component", prof))
            result["sizes"].setdefault(size, {})[mode] = entry
    lengths = [int(n) for n in args.memory_frames.split(",") if n]
    if lengths and memory_size in sizes:
        curves = memory_curve(
            lengths,
            args.objects,
            min(args.frames, 60),
            console,
            tuple(memory_keys),
            args.multimask,
            memory_size,
        )
        table = Table(title=f"{memory_size} (128 px): peak RSS of a fresh process (MiB)")
        for col in ("variant", *[f"{n} frames: before / peak" for n in lengths]):
            table.add_column(col)
        for name, curve in curves.items():
            table.add_row(
                name,
                *[f"{curve[n]['before_mib']:.0f} / {curve[n]['peak_mib']:.0f}" for n in lengths],
            )
        console.print(table)
        result["memory_mib"] = {k: {str(n): v for n, v in c.items()} for k, c in curves.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
