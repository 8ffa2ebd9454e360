"""The reference's joint augmentation of an item's arrays: albumentations' ``RandomCrop``,
``Flip(p=0.5)`` and ``Rotate(p=0.2)``, in that order, with the same window, flip and angle for images,
soft targets (bilinear) and integer class maps (nearest)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tv_functional

from cromss.errors import CromssError

SIZE_MULTIPLE = 32
"""Encoders downsample 5 times: model inputs are cropped to a multiple of this."""


FLIP_AXES = {-1: (-2, -1), 0: (-2,), 1: (-1,)}
"""albumentations' ``Flip`` codes (those of ``cv2.flip``): -1 both axes, 0 vertical, 1 horizontal."""
ROTATE_LIMIT = 90.0
"""albumentations' ``Rotate`` default: an angle drawn uniformly from [-90, 90] degrees."""


def rotate_tensor(stack: torch.Tensor, angle: float, nearest: bool = False) -> torch.Tensor:
    """Rotate the last two axes of a float32 tensor (on any device) counter-clockwise by
    ``angle`` degrees about the centre, as albumentations' ``Rotate`` does: bilinear, or nearest
    (values rounded) for class maps, borders filled by reflect-101 (``cv2.BORDER_REFLECT_101``,
    torch's ``reflect`` padding) and the same size. The resampling is torchvision's
    ``v2.functional.rotate`` on the padded tensor."""
    height, width = stack.shape[-2:]
    pad = math.ceil(max(height, width) * (math.sqrt(2) - 1) / 2) + 2  # a 45-degree corner
    if pad >= min(height, width):
        raise CromssError(f"{height}x{width} px is too small to rotate with reflected borders")
    padded = torch.nn.functional.pad(stack.reshape(-1, height, width), (pad, pad, pad, pad),
                                     mode="reflect")
    mode = InterpolationMode.NEAREST if nearest else InterpolationMode.BILINEAR
    turned = tv_functional.rotate(padded, float(angle), interpolation=mode)
    out = turned[:, pad:pad + height, pad:pad + width].reshape(stack.shape)
    return out.round() if nearest else out


def rotate(array: np.ndarray, angle: float) -> np.ndarray:
    """:func:`rotate_tensor` of an array: bilinear for floats, nearest for integer class maps;
    it keeps its type."""
    nearest = bool(np.issubdtype(array.dtype, np.integer))
    stack = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    out = rotate_tensor(stack, angle, nearest).numpy()
    return out.astype(array.dtype) if nearest else out


def rotate_together(arrays: Sequence[np.ndarray], angle: float) -> list[np.ndarray]:
    """:func:`rotate` of several arrays of one kind (all float or all integer) and size in one
    resampling (it works band by band, so the values are the same); each keeps its shape and
    type."""
    stack = np.concatenate([array.reshape(-1, *array.shape[-2:]) for array in arrays])
    bounds = np.cumsum([math.prod(array.shape[:-2]) for array in arrays])[:-1]
    return [part.reshape(array.shape).astype(array.dtype, copy=False) for part, array in zip(
        np.split(rotate(stack, angle), bounds), arrays, strict=True)]


@dataclass(frozen=True)
class Transform:
    """One crop window, then albumentations' ``Flip`` (code ``flip``, None for no flip), then its
    ``Rotate`` by ``angle`` degrees (0 for none): the reference's ``RandomCrop``, ``Flip(p=0.5)``,
    ``Rotate(p=0.2)`` in that order."""

    top: int
    left: int
    size: int
    flip: int | None = None
    angle: float = 0.0

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The crop window of the last two axes (a view)."""
        return array[..., self.top:self.top + self.size, self.left:self.left + self.size]

    @property
    def moves(self) -> Transform:
        """The flip and rotation alone, for an array already cropped."""
        return replace(self, top=0, left=0)

    def move_all(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The flip and rotation of several cropped arrays of one item, as :meth:`moves` of each:
        the floats rotated in one resampling, the integer maps in another."""
        if not self.angle:
            return {key: self.moves(value) for key, value in arrays.items()}
        flip = Transform(0, 0, self.size, self.flip)
        flipped = {key: flip(value) for key, value in arrays.items()}
        moved: dict[str, np.ndarray] = {}
        for integer in (False, True):
            keys = [key for key, value in flipped.items()
                    if np.issubdtype(value.dtype, np.integer) == integer]
            if keys:
                moved.update(zip(keys, rotate_together([flipped[k] for k in keys], self.angle)))
        return {key: moved[key] for key in arrays}

    def __call__(self, array: np.ndarray) -> np.ndarray:
        """Apply to the last two axes of ``array``; the same call transforms images, soft targets
        (bilinear) and integer labels (nearest)."""
        out = self.crop(array)
        if self.flip is not None:
            out = np.flip(out, FLIP_AXES[self.flip])
        if self.angle:
            return rotate(out, self.angle)
        return np.ascontiguousarray(out)


def random_transform(rng: np.random.Generator, height: int, width: int, crop: int,
                     flip_p: float, rotate_p: float) -> Transform:
    """A random crop of side ``crop``; with ``flip_p`` a flip of one of the three kinds (vertical,
    horizontal, both, equally likely); with ``rotate_p`` a rotation by U(-90, 90) degrees."""
    if crop > min(height, width):
        raise CromssError(f"crop {crop} is larger than the {height}x{width} images")
    top = int(rng.integers(height - crop + 1))
    left = int(rng.integers(width - crop + 1))
    flip = int(rng.integers(-1, 2)) if rng.random() < flip_p else None
    angle = float(rng.uniform(-ROTATE_LIMIT, ROTATE_LIMIT)) if rng.random() < rotate_p else 0.0
    return Transform(top, left, crop, flip, angle)


def centre_transform(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> Transform:
    """The central square crop whose side is the largest multiple of ``multiple`` that fits."""
    size = min(height, width) // multiple * multiple
    if size == 0:
        raise CromssError(f"{height}x{width} images are smaller than {multiple} px")
    return Transform((height - size) // 2, (width - size) // 2, size)
