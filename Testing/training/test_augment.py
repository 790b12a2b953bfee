"""Paper augmentations applied alike to image, labels and weights (SegNetsLib.training.augment)."""

from __future__ import annotations

import numpy as np
import torch

from SegNetsLib.training.augment import AugmentOptions, augment, build_augmentation, input_size


def _sample(size=(24, 40, 40)) -> dict[str, torch.Tensor]:
    z, y, x = np.indices(size)
    ball = ((z - size[0] / 2) / 7) ** 2 + ((y - size[1] / 2) / 10) ** 2 + ((x - size[2] / 2) / 10) ** 2 <= 1
    image = torch.from_numpy(ball.astype(np.float32))[None]
    label = torch.from_numpy((2 * ball).astype(np.float32))[None]
    weight = torch.zeros_like(label)
    weight[:, size[0] // 2] = 1.0  # one annotated slice
    return {"image": image, "label": label, "weight": weight}


def center_crop(sample: dict[str, torch.Tensor], patch_size) -> dict[str, torch.Tensor]:
    """The central ``patch_size`` of every tensor of a sample: what an augmentation that moves nothing gives."""
    starts = [(s - p) // 2 for s, p in zip(next(iter(sample.values())).shape[1:], patch_size)]
    window = tuple(slice(start, start + p) for start, p in zip(starts, patch_size))
    return {key: tensor[(slice(None), *window)] for key, tensor in sample.items()}


def test_output_has_patch_size_and_types():
    patch = (8, 24, 24)
    transform = build_augmentation(patch, slice_axis=0)
    out = augment(transform, _sample())
    assert (
        out["image"].shape == (1, *patch) and out["label"].shape == (1, *patch) and out["weight"].shape == (1, *patch)
    )
    assert out["label"].dtype == torch.int64 and out["weight"].dtype == torch.float32


def test_labels_and_weights_stay_discrete_and_follow_the_image():
    torch.manual_seed(0)
    np.random.seed(0)
    options = AugmentOptions(intensity_prob=0.0, spatial_prob=1.0, deform_magnitude=(2.0, 3.0))
    patch = (16, 32, 32)
    transform = build_augmentation(patch, options, slice_axis=0)
    transform.set_random_state(seed=3)
    moved = 0
    for _ in range(4):
        out = augment(transform, _sample())
        assert set(torch.unique(out["label"]).tolist()) <= {0, 2}
        assert set(torch.unique(out["weight"]).tolist()) <= {0.0, 1.0}
        # image (linear) and labels (nearest) were warped by the same deformation
        inside = out["image"][out["label"] == 2]
        outside = out["image"][out["label"] == 0]
        assert inside.mean() > 0.8 and outside.mean() < 0.2
        plain = center_crop(_sample(), patch)
        moved += int(not torch.equal(out["label"], plain["label"].long()))
    assert moved >= 3  # the geometry really changes


def test_gray_value_changes_touch_the_image_only():
    options = AugmentOptions(spatial_prob=0.0, intensity_prob=1.0)
    transform = build_augmentation((8, 24, 24), options)
    transform.set_random_state(seed=1)
    sample = _sample()
    out = augment(transform, sample)
    plain = center_crop(sample, (8, 24, 24))
    assert torch.equal(out["label"], plain["label"].long()) and torch.equal(out["weight"], plain["weight"])
    assert not torch.allclose(out["image"], plain["image"])


def test_input_size_leaves_room_for_rotation_and_scaling():
    size = input_size((8, 48, 48), AugmentOptions())
    assert all(s > p for s, p in zip(size, (8, 48, 48)))


def test_untracked_metadata_gives_the_same_values_and_restores_the_setting():
    from monai.data import get_track_meta

    from SegNetsLib.training.augment import untracked_meta

    patch = (8, 24, 24)
    tracked = build_augmentation(patch, slice_axis=0, seed=5)
    plain = build_augmentation(patch, slice_axis=0, seed=5)
    for _ in range(3):
        with_meta = tracked(dict(_sample()))  # MONAI's default: metadata carried along
        out = augment(plain, _sample())
        assert torch.equal(out["image"], with_meta["image"].as_tensor().float())
        assert torch.equal(out["label"], with_meta["label"].as_tensor().round().long())
        assert all(type(value) is torch.Tensor for value in out.values())  # plain tensors, no MetaTensor
    assert get_track_meta()
    with untracked_meta():
        assert not get_track_meta()
    assert get_track_meta()
