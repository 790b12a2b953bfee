"""pad_to_multiple / crop_to: any input size in, the same size back out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.nets.blocks.padding import crop_to, mirror_pad, pad_to_multiple


def test_pad_to_multiple_pads_each_axis_at_its_far_end():
    x = torch.arange(19 * 23 * 17, dtype=torch.float32).reshape(1, 1, 19, 23, 17)
    padded, shape = pad_to_multiple(x, 8)
    assert shape == (19, 23, 17)
    assert padded.shape == (1, 1, 24, 24, 24)
    assert torch.equal(padded[:, :, :19, :23, :17], x)
    assert padded[:, :, 19:].abs().sum() == 0 and padded[..., 17:].abs().sum() == 0


def test_pad_to_multiple_per_axis_and_round_trip():
    x = torch.randn(2, 3, 9, 10, 11)
    padded, shape = pad_to_multiple(x, (2, 4, 8))
    assert padded.shape == (2, 3, 10, 12, 16)
    assert torch.equal(crop_to(padded, shape), x)


def test_pad_to_multiple_replicate_mode_repeats_the_border():
    x = torch.randn(1, 1, 5, 4, 4)
    padded, _ = pad_to_multiple(x, (8, 4, 4), mode="replicate")
    assert torch.equal(padded[:, :, 7], x[:, :, 4])


def test_no_padding_needed_returns_the_same_tensor():
    x = torch.randn(1, 1, 16, 16, 16)
    padded, shape = pad_to_multiple(x, 16)
    assert padded is x and shape == (16, 16, 16)
    assert crop_to(x, shape) is x


@pytest.mark.parametrize("multiple", [0, (2, 2), -4])
def test_bad_multiple_is_a_segnets_error(multiple):
    with pytest.raises(SegNetsError, match="multiple"):
        pad_to_multiple(torch.zeros(1, 1, 4, 4, 4), multiple)


def test_crop_larger_than_tensor_is_a_segnets_error():
    with pytest.raises(SegNetsError, match="crop"):
        crop_to(torch.zeros(1, 1, 4, 4, 4), (5, 4, 4))


def test_mirror_pad_matches_numpy_reflect_even_beyond_the_input_size():
    x = torch.arange(2 * 5 * 3 * 4, dtype=torch.float32).reshape(1, 2, 5, 3, 4)
    before, after = (7, 1, 0), (2, 9, 4)
    expected = np.pad(x.numpy(), [(0, 0), (0, 0)] + list(zip(before, after)), mode="reflect")
    assert np.array_equal(mirror_pad(x, before, after).numpy(), expected)


def test_mirror_pad_of_a_single_voxel_axis_repeats_it():
    x = torch.randn(1, 1, 1, 2, 2)
    assert torch.equal(mirror_pad(x, (2, 0, 0), (3, 0, 0)), x.expand(1, 1, 6, 2, 2))
