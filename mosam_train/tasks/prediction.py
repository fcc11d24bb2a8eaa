"""`python predict.py video=<file.mp4 | frame folder> box=<file> ckpt=...`: the demo.
Segment a video from first-frame prompts (box, clicks or mask) and write per-frame masks,
boxes and an overlay video under the run directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mosam_train.errors import DataError
from mosam_train.inference.demo import demo_input, read_prompts, run_demo
from mosam_train.inference.video_input import open_video
from mosam_train.models.shipped import resolve_weights
from mosam_train.tasks.inference_model import autocast, inference_propagator

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Every input (video, prompt, checkpoint path) is checked before the model is loaded."""
    if cfg.get("video"):
        video_path, box = Path(cfg.video), cfg.get("box")
    else:
        prompted = any(cfg.get(k) is not None for k in ("box", "points", "mask"))
        video_path, box = demo_input(cfg.demo.root, cfg.demo.sequence, cfg.get("box"), prompted)
    video = open_video(video_path, backend=cfg.get("video_backend") or "auto")
    prompts = read_prompts(
        (video.height, video.width),
        box=box,
        points=cfg.get("points"),
        mask=cfg.get("mask"),
        box_per_line=cfg.get("box_per_line") or "object",
    )
    if not cfg.get("ckpt") or not resolve_weights(cfg.ckpt).is_file():
        raise DataError(
            f"ckpt={cfg.get('ckpt')}: no such file. Fix: pass ckpt=<.ckpt of this project or "
            f"official SAM 2 .pt> (with sam2=<size> for a .pt); `python train.py` writes the "
            f"default micro checkpoint, checkpoints/sam2_micro_synthetic.pt."
        )
    propagator, image_size = inference_propagator(cfg)
    log.info(
        "%s: %d frames %dx%d, %d object(s), %s", video.path, video.num_frames, video.width,
        video.height, len(prompts), cfg.ckpt,
    )  # fmt: skip
    result = run_demo(
        propagator,
        video,
        prompts,
        Path(cfg.paths.output_dir),
        image_size,
        fps=cfg.get("fps"),
        read_ahead=int(cfg.get("read_ahead") or 16),
        autocast=autocast(cfg),
    )
    found = ", ".join(f"{k}: {n}/{result.num_frames}" for k, n in result.frames_with_box.items())
    log.info("frames with a box per object (%s); outputs in %s", found, result.out_dir)
    return {
        "num_frames": result.num_frames,
        "objects": result.object_ids,
        "frames_with_box": result.frames_with_box,
        "out_dir": str(result.out_dir),
    }
