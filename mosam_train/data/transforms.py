"""Clip augmentation for training, and the eval transform (SAM 2's exact frame
preprocessing, `mosam_train.images.preprocess_frame`).

Training clips are augmented with albumentations' batch targets (`images=`, `masks=`):
geometric parameters are drawn once per call, hence identical for every frame of a clip,
as SAM 2's recipe requires (`consistent_transform: True`); a second, per-frame colour
jitter follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch

from mosam_train.images import normalize_frames, preprocess_frame


def resize_masks(masks: np.ndarray, image_size: int) -> np.ndarray:
    """bool [N, H, W] -> bool [N, S, S] by exact nearest neighbour."""
    if masks.shape[0] == 0:
        return np.zeros((0, image_size, image_size), bool)
    out = [
        cv2.resize(
            np.ascontiguousarray(chunk.transpose(1, 2, 0)).astype(np.uint8),
            (image_size, image_size),
            interpolation=cv2.INTER_NEAREST_EXACT,
        ).reshape(image_size, image_size, -1)
        for chunk in np.array_split(masks, max(1, -(-masks.shape[0] // 256)))
    ]
    return np.concatenate(out, axis=2).transpose(2, 0, 1).astype(bool)


def _stack_masks(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
    num_objects = {m.shape[0] for m in masks}
    if len(num_objects) != 1:
        raise ValueError(f"every frame needs the same number of object masks, got {num_objects}")
    return np.concatenate([np.asarray(m, bool) for m in masks]).astype(np.uint8), num_objects.pop()


class ClipTransform:
    """`(frames, masks) -> (float [T,3,S,S] normalised, bool [T,O,S,S])`.

    frames: list of uint8 [H, W, 3]; masks: list of bool [O, H, W] (same O per frame).
    `seed` makes the draw reproducible (the dataset passes one derived from its
    (seed, epoch, index)); without it, albumentations' own generator is used.
    """

    def __init__(
        self,
        image_size: int,
        clip_aug: A.Compose | None = None,
        frame_aug: A.Compose | None = None,
    ) -> None:
        self.image_size = image_size
        self.clip_aug = clip_aug
        self.frame_aug = frame_aug

    def __repr__(self) -> str:
        return f"ClipTransform(image_size={self.image_size}, clip_aug={self.clip_aug}, frame_aug={self.frame_aug})"

    def __call__(
        self,
        frames: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        seed: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(frames) != len(masks):
            raise ValueError(f"{len(frames)} frames but {len(masks)} mask sets")
        T, S = len(frames), self.image_size
        flat, num_obj = _stack_masks(masks)
        if self.clip_aug is None:  # eval: SAM 2's exact frame preprocessing
            x = torch.stack([preprocess_frame(f, S) for f in frames])
            m = resize_masks(flat.astype(bool), S)
            return x, torch.from_numpy(m).reshape(T, num_obj, S, S)
        if seed is not None:
            self.clip_aug.set_random_seed(seed)
            if self.frame_aug is not None:
                self.frame_aug.set_random_seed(seed + 1)
        data = {"images": np.stack(frames)}
        if num_obj > 0:
            data["masks"] = flat
        out = self.clip_aug(**data)
        images = out["images"]
        if self.frame_aug is not None:  # fresh parameters for every frame
            images = np.stack([self.frame_aug(image=im)["image"] for im in images])
        m = np.asarray(out["masks"]).astype(bool) if num_obj > 0 else np.zeros((0, S, S), bool)
        return normalize_frames(images), torch.from_numpy(m).reshape(T, num_obj, S, S)


def _jitter(brightness: float, contrast: float, saturation: float, hue: float) -> A.ColorJitter:
    return A.ColorJitter(brightness, contrast, saturation, (-hue, hue), p=1.0)


def build_train_transform(
    image_size: int,
    hflip_p: float = 0.5,
    affine_p: float = 1.0,
    rotate: float = 25.0,
    shear: float = 20.0,
    scale: tuple[float, float] = (1.0, 1.0),
    translate: float = 0.0,
    clip_brightness: float = 0.1,
    clip_contrast: float = 0.03,
    clip_saturation: float = 0.03,
    clip_hue: float = 0.0,
    frame_brightness: float = 0.1,
    frame_contrast: float = 0.05,
    frame_saturation: float = 0.05,
    frame_hue: float = 0.0,
    grayscale_p: float = 0.05,
    resize: str = "square",
) -> ClipTransform:
    """SAM 2's MOSE fine-tuning recipe (`sam2.1_hiera_b+_MOSE_finetune.yaml`) as defaults.

    Per clip: hflip, affine (rotate +-`rotate` deg, x-shear +-`shear` deg, like
    torchvision's RandomAffine), resize, colour jitter, grayscale; then per frame: a small
    colour jitter. Masks use nearest-neighbour interpolation. `resize="square"` stretches
    to S x S as SAM 2 does (and as inference does); ``"pad"`` keeps the aspect ratio (long
    side S) and pads bottom/right with zeros (mask: background), which keeps thin objects'
    shape on wide or portrait videos at the cost of a train/inference mismatch in aspect.
    """
    if resize == "square":
        sizing = [
            A.Resize(
                image_size,
                image_size,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                area_for_downscale="image",
            )
        ]
    elif resize == "pad":
        sizing = [
            A.LongestMaxSize(
                max_size=image_size,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                area_for_downscale="image",
            ),
            A.PadIfNeeded(
                image_size, image_size, position="top_left", border_mode=cv2.BORDER_CONSTANT
            ),
        ]
    else:
        raise ValueError(f"resize must be 'square' or 'pad', got {resize!r}")
    clip_aug = A.Compose(
        [
            A.HorizontalFlip(p=hflip_p),
            A.Affine(
                scale=tuple(scale),
                translate_percent=(-translate, translate),
                rotate=(-rotate, rotate),
                shear={"x": (-shear, shear), "y": (0.0, 0.0)},
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=affine_p,
            ),
            *sizing,
            _jitter(clip_brightness, clip_contrast, clip_saturation, clip_hue),
            A.ToGray(p=grayscale_p),
        ]
    )
    frame_aug = A.Compose([_jitter(frame_brightness, frame_contrast, frame_saturation, frame_hue)])
    return ClipTransform(image_size, clip_aug, frame_aug)


def build_eval_transform(image_size: int) -> ClipTransform:
    """Resize + normalise only; frames exactly as SAM 2's predictor (`preprocess_frame`)."""
    return ClipTransform(image_size)
