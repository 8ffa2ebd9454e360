"""The reference's joint augmentation: crop, albumentations' flip codes, rotation with reflected
borders (bilinear for images, nearest for labels) and the draws' probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from cromss.constants import IGNORE_INDEX
from cromss.training import transforms


def test_transform_moves_images_labels_and_priors_together():
    array = np.arange(2 * 6 * 6).reshape(2, 6, 6)
    # albumentations' Flip codes: 0 vertical, 1 horizontal, -1 both
    for flip, expected in ((0, array[:, 1:5, 2:6][:, ::-1, :]), (1, array[:, 1:5, 2:6][:, :, ::-1]),
                           (-1, array[:, 1:5, 2:6][:, ::-1, ::-1])):
        t = transforms.Transform(top=1, left=2, size=4, flip=flip)
        np.testing.assert_array_equal(t(array), expected)
        np.testing.assert_array_equal(t(array[0]), expected[0])


def test_rotation_is_bilinear_with_reflect_101_borders_and_nearest_for_labels():
    """Against scipy's independent rotation (``mode="mirror"`` is OpenCV's BORDER_REFLECT_101)."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 24, 24)).astype(np.float32)
    for angle in (-73.0, 30.0, 90.0):
        got = transforms.Transform(0, 0, 24, angle=angle)(image)
        expected = np.stack([ndimage.rotate(band, angle, reshape=False, order=1, mode="mirror")
                             for band in image])
        np.testing.assert_allclose(got, expected, atol=2e-4)
    np.testing.assert_allclose(transforms.Transform(0, 0, 24, angle=90.0)(image),
                               np.rot90(image, 1, axes=(1, 2)), atol=1e-5)
    labels = rng.integers(0, 9, (24, 24))
    labels[:3] = IGNORE_INDEX
    turned = transforms.Transform(0, 0, 24, angle=37.0)(labels)
    assert turned.dtype == labels.dtype and set(np.unique(turned)) <= set(np.unique(labels))
    expected = ndimage.rotate(labels, 37.0, reshape=False, order=0, mode="mirror")
    assert np.mean(turned == expected) > 0.97  # nearest: ties at half-pixel positions may differ


def test_arrays_rotated_together_equal_each_rotated_alone():
    rng = np.random.default_rng(4)
    floats = [rng.normal(size=(2, 20, 20)).astype(np.float32),
              rng.normal(size=(3, 20, 20)).astype(np.float32), np.ones((20, 20), np.float32)]
    ints = [rng.integers(0, 9, (20, 20)), rng.integers(0, 9, (20, 20)).astype(np.uint8)]
    for group in (floats, ints):
        together = transforms.rotate_together(group, 33.0)
        for got, alone in zip(together, group, strict=True):
            assert got.dtype == alone.dtype and got.shape == alone.shape
            np.testing.assert_array_equal(got, transforms.rotate(alone, 33.0))
    transform = transforms.Transform(0, 0, 20, flip=-1, angle=-52.0)
    arrays = {"s2": floats[1], "label": ints[0], "soft": floats[0], "truth": ints[1]}
    moved = transform.move_all(arrays)
    assert list(moved) == list(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(moved[key], transform(value))


def test_random_transform_draws_follow_the_reference():
    rng = np.random.default_rng(0)
    draws = [transforms.random_transform(rng, 20, 20, 8, 0.5, 0.2) for _ in range(6000)]
    flips = [d.flip for d in draws]
    assert abs(np.mean([f is not None for f in flips]) - 0.5) < 0.03
    for code in (-1, 0, 1):  # one of vertical, horizontal or both, equally likely
        assert abs(flips.count(code) / len(flips) - 0.5 / 3) < 0.02
    angles = np.array([d.angle for d in draws if d.angle])
    assert abs(len(angles) / len(draws) - 0.2) < 0.02
    assert angles.min() >= -90 and angles.max() <= 90 and abs(angles.mean()) < 5
    assert np.mean(np.abs(angles) % 90 > 1) > 0.9  # any angle, not quarter turns
    assert max(d.top for d in draws) == 12 and min(d.left for d in draws) == 0
    with pytest.raises(ValueError, match="larger"):
        transforms.random_transform(rng, 6, 6, 8, 0.5, 0.2)
