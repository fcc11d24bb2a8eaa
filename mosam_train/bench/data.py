"""Data-loading throughput: clips/s per DataLoader worker at training settings, and how
many workers keep a GPU fed.

    python -m mosam_train.bench.data [--image-size 1024] [--clip-len 16] [--clips 6]
        [--gpu-step-s 0.5] [--gpus 8] [--workdir DIR]

It writes two small datasets in their real layouts (unless they are already in
`--workdir`): SA-V train (one H.264 mp4 with B-frames, 1280x720, 24 fps, masklets every 4th
frame) and a JPEG-folder set in the DAVIS layout (854x480, every frame annotated). Then it
draws training clips exactly as a DataLoader worker does (`ClipDataset.__getitem__`: read
only the clip's frames, decode masks, augment, resize; optionally Farneback flow), in this
process with one thread for torch and OpenCV, as each worker runs.

Beside it, as the anchor, SAM 2's own training data pipeline (the `training` package `sam2`
installs) on the same JPEG-folder set: the MOSE fine-tune recipe's `VOSDataset`
(`PNGRawDataset` + `RandomUniformSampler` + the recipe's transforms), instantiated from
`sam2/configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml` with only the paths, the
resolution, the clip length and the object count set (the recipe draws 8 frames; here both
draw `--clip-len`). Its segment loader imports pandas, which the project does not need: the
bench installs it with `pip install --no-deps --target` into a cache folder when the
environment lacks it (no network: the anchor row says it is unavailable). SAM 2's training
reads SA-V from JPEG frames extracted beforehand (`JSONRawDataset`), not from the mp4, so the
SA-V rows have no anchor.

The GPU side is a stated figure, not a measurement: by default a MoSAM step on SAM 2.1
Hiera-B+ at 1024 px takes `clip_len / 64.1 x 2` seconds (SAM 2's published 64.1 frames/s
for B+ on an A100; x2 for the backward pass through memory attention and the decoder).
Pass `--gpu-step-s` for your own measured step.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import io
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from mosam_train.bench.pip_target import ReferenceUnavailable, pip_target
from mosam_train.data.datamodule import ClipDataset
from mosam_train.data.formats import read_split
from mosam_train.data.synthetic import make_video
from mosam_train.data.transforms import build_train_transform
from mosam_train.optical_flow import FarnebackFlow
from mosam_train.palette import voc_palette

SAM21_BPLUS_FPS = 64.1  # REFERENCE: SAM 2.1 Hiera-B+, A100, frames/s (inference)
SAM2_RECIPE = "configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml"
SAV_SIZE = (720, 1280)
JPEG_SIZE = (480, 854)


def _scene(num_frames: int, height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 [T, H, W, 3] and labels uint8 [T, H, W] of a procedural video; rendered
    for half the frames and played back and forth (the content does not change the cost)."""
    frames, labels, _ = make_video(
        np.random.default_rng(seed), num_frames // 2, height, width, None
    )
    order = list(range(len(frames))) + list(range(len(frames) - 1, -1, -1))
    return np.stack([frames[i] for i in order]), np.stack([labels[i] for i in order])


def write_sav_video(root: Path, num_frames: int = 96, seed: int = 0) -> None:
    """`<root>/sav_train/sav_000/sav_000000.mp4` + `_manual.json`: H.264 (libx264 default
    preset, B-frames), masklets (COCO RLE) every 4th frame."""
    import av  # the encoder; decoding uses the reader's backend
    from pycocotools import mask as mask_utils

    frames, labels = _scene(num_frames, *SAV_SIZE, seed)
    folder = root / "sav_train" / "sav_000"
    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(folder / "sav_000000.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = SAV_SIZE[1], SAV_SIZE[0], "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    ids = sorted(set(np.unique(labels).tolist()) - {0})
    masklet = []
    for t in range(0, num_frames, 4):
        rles = []
        for oid in ids:
            rle = mask_utils.encode(np.asfortranarray((labels[t] == oid).astype(np.uint8)))
            rles.append({"size": rle["size"], "counts": rle["counts"].decode()})
        masklet.append(rles)
    annotated = range(0, num_frames, 4)
    first = [
        float(next(i for i, t in enumerate(annotated) if (labels[t] == oid).any())) for oid in ids
    ]
    meta = {
        "video_id": "sav_000000",
        "video_duration": num_frames / 24,
        "video_frame_count": float(num_frames),
        "video_height": float(SAV_SIZE[0]),
        "video_width": float(SAV_SIZE[1]),
        "video_resolution": float(SAV_SIZE[0] * SAV_SIZE[1]),
        "video_environment": "Outdoor",
        "video_split": "train",
        "masklet": masklet,
        "masklet_id": list(range(len(ids))),
        "masklet_size_rel": [0.0] * len(ids),
        "masklet_size_abs": [0.0] * len(ids),
        "masklet_size_bucket": ["small"] * len(ids),
        "masklet_visibility_changes": [0] * len(ids),
        "masklet_first_appeared_frame": first,
        "masklet_frame_count": [float(len(masklet))] * len(ids),
        "masklet_edited_frame_count": [0.0] * len(ids),
        "masklet_type": ["manual"] * len(ids),
        "masklet_stability_score": [[1.0]] * len(ids),
        "masklet_num": len(ids),
    }
    (folder / "sav_000000_manual.json").write_text(json.dumps(meta))


def write_jpeg_video(root: Path, num_frames: int = 48, seed: int = 1) -> None:
    """One DAVIS-layout sequence (JPEG quality 90 frames, palette PNGs) and its split."""
    from PIL import Image

    frames, labels = _scene(num_frames, *JPEG_SIZE, seed)
    img = root / "JPEGImages" / "480p" / "bench"
    ann = root / "Annotations" / "480p" / "bench"
    img.mkdir(parents=True, exist_ok=True)
    ann.mkdir(parents=True, exist_ok=True)
    for t, (rgb, lbl) in enumerate(zip(frames, labels, strict=True)):
        cv2.imwrite(str(img / f"{t:05d}.jpg"), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        png = Image.fromarray(lbl)
        png.putpalette(list(voc_palette()))
        png.save(ann / f"{t:05d}.png")
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "train.txt").write_text("bench\n")


def sam2_training_dataset(
    jpeg_root: Path, image_size: int, clip_len: int, max_objects: int
) -> Callable[[int], object]:
    """SAM 2's training pipeline on `jpeg_root`: clip i of its MOSE recipe's `VOSDataset`.

    Its one video is index 0; the recipe's sampler draws a random clip per call (Python's
    `random`, seeded here). Raises `ReferenceUnavailable` when pandas cannot be installed."""
    sys.path.append(str(pip_target("sam2-training", {"pandas": "pandas"})))
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(str(importlib.resources.files("sam2") / SAM2_RECIPE))
    cfg.scratch.resolution, cfg.scratch.num_frames = image_size, clip_len
    cfg.scratch.max_num_objects = max_objects
    cfg.dataset.img_folder = str(jpeg_root / "JPEGImages" / "480p")
    cfg.dataset.gt_folder = str(jpeg_root / "Annotations" / "480p")
    cfg.dataset.file_list_txt = str(jpeg_root / "ImageSets" / "2017" / "train.txt")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its length
        dataset = instantiate(cfg.trainer.data.train.datasets[0].dataset.datasets[0])
    random.seed(0)
    return lambda i: dataset[0]


def clip_seconds(get: Callable[[int], object], clips: int) -> float:
    """Mean seconds per clip `get(1..clips)` after one warm-up clip `get(0)` (file caches,
    lazy imports)."""
    get(0)
    start = time.perf_counter()
    for i in range(1, clips + 1):
        get(i)
    return (time.perf_counter() - start) / clips


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--max-objects", type=int, default=3)
    p.add_argument("--clips", type=int, default=6, help="clips timed per setting")
    p.add_argument("--gpu-step-s", type=float, default=None, help="seconds per GPU step")
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--workdir", type=Path, default=None, help="keep the datasets here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # as in a DataLoader worker
    cv2.setNumThreads(1)
    step_s = args.gpu_step_s or args.clip_len / SAM21_BPLUS_FPS * 2
    console = Console(width=120)  # the table is meant to be pasted whole
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        sav_root, jpeg_root = work / "SA-V", work / "DAVIS"
        if not (sav_root / "sav_train").exists():
            console.print("writing the SA-V mp4 and the JPEG-folder video ...")
            write_sav_video(sav_root)
            write_jpeg_video(jpeg_root)
        jpeg_name = "JPEG 854x480"
        sets = {
            "SA-V mp4 1280x720": read_split("sav", sav_root, "sav_train"),
            jpeg_name: read_split("davis", jpeg_root, "train"),
        }  # fmt: skip
        flows = {
            "none (sam2)": None,
            "Farneback 256 px (mosam)": FarnebackFlow(max_side=256),
            "Farneback full": FarnebackFlow(),
        }
        rows: list[dict] = []

        def measure(data: str, pipeline: str, flow: str, get: Callable[[int], object]) -> float:
            s = clip_seconds(get, args.clips)
            rows.append({"data": data, "pipeline": pipeline, "flow": flow, "s_per_clip": s})
            console.print(f"{data} | {pipeline} | {flow}: {s:.3f} s/clip", highlight=False)
            return s

        for data_name, records in sets.items():
            for flow_name, flow in flows.items():
                ds = ClipDataset(
                    records,
                    clip_len=args.clip_len,
                    max_skip=4,
                    max_objects=args.max_objects,
                    transform=build_train_transform(args.image_size),
                    samples_per_epoch=args.clips + 1,
                    flow=flow,
                )
                measure(data_name, "ours", flow_name, ds.__getitem__)
        anchor_s, anchor = None, "measured"
        try:
            get = sam2_training_dataset(jpeg_root, args.image_size, args.clip_len, args.max_objects)
        except ReferenceUnavailable as e:
            anchor = f"unavailable: {e}"
            console.print(f"SAM 2 training pipeline {anchor}", highlight=False, soft_wrap=True)
        else:
            anchor_s = measure(jpeg_name, "SAM 2 training", "none", get)
        table = Table(
            title=f"{args.clip_len}-frame clips at {args.image_size} px, <= {args.max_objects} "
            f"objects, one worker; GPU step {step_s:.3f} s",
            caption="ours: ClipDataset (flow: model=sam2 / model=mosam); SAM 2 training: its "
            "VOSDataset, MOSE recipe (H.264: no such reader); x SAM 2: s/clip over SAM 2's; "
            "clips/s and workers: per worker",
        )
        for col in ("data", "pipeline", "flow"):
            table.add_column(col, no_wrap=True)
        for col in ("s/clip", "clips/s", "x SAM 2", "workers/GPU", f"{args.gpus} GPUs"):
            table.add_column(col)
        for row in rows:
            s = row["s_per_clip"]
            row["workers_per_gpu"] = math.ceil(s / step_s)
            if anchor_s is not None and row["data"] == jpeg_name:
                row["x_sam2"] = s / anchor_s
            table.add_row(
                row["data"], row["pipeline"], row["flow"], f"{s:.3f}", f"{1 / s:.2f}",
                f"{row['x_sam2']:.2f}" if "x_sam2" in row else "-",
                str(row["workers_per_gpu"]), str(row["workers_per_gpu"] * args.gpus),
            )  # fmt: skip
        console.print(table)
        result = {
            "bench": "data",
            "image_size": args.image_size,
            "clip_len": args.clip_len,
            "max_objects": args.max_objects,
            "clips": args.clips,
            "gpu_step_s": step_s,
            "rows": rows,
            "sam2_training": anchor,
        }
        print(json.dumps(result))


if __name__ == "__main__":
    main()
