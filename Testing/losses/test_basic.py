"""Weighted cross-entropy and Dice losses: hand-computed values; unlabeled voxels (weight 0) change nothing."""

from __future__ import annotations

import math

import pytest
import torch

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.losses import dice_loss, dice_per_class, masked_dice, weighted_cross_entropy


def _volume(values, dtype=torch.float32) -> torch.Tensor:
    """A list over 3 voxels -> (1, 3, 1, 1) or (1, C, 3, 1, 1) spatial layout."""
    return torch.tensor(values, dtype=dtype)


# logits (N=1, C=2, D=3, H=1, W=1): voxel 0 -> (0, 0); voxel 1 -> (ln 3, 0); voxel 2 -> (0, 5)
LOGITS = torch.tensor([[0.0, math.log(3.0), 0.0], [0.0, 0.0, 5.0]]).reshape(1, 2, 3, 1, 1)
TARGET = torch.tensor([0, 0, 1]).reshape(1, 3, 1, 1)


def test_weighted_cross_entropy_by_hand():
    weight = torch.tensor([1.0, 1.0, 0.0]).reshape(1, 3, 1, 1)
    expected = (math.log(2.0) + math.log(4.0 / 3.0)) / 2  # voxel 2 is unlabeled
    assert weighted_cross_entropy(LOGITS, TARGET, weight).item() == pytest.approx(expected, rel=1e-6)
    # class weights multiply per target class; the mean is normalised by the summed weights
    weight = torch.tensor([1.0, 2.0, 1.0]).reshape(1, 3, 1, 1)
    ce2 = math.log(1 + math.exp(-5.0))
    expected = (1 * math.log(2.0) + 2 * math.log(4.0 / 3.0) + 3 * ce2) / (1 + 2 + 3)
    got = weighted_cross_entropy(LOGITS, TARGET, weight, class_weights=[1.0, 3.0])
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_dice_plain_and_squared_by_hand():
    # probabilities given directly; foreground channel p = (0.5, 1.0, 0.0), truth g = (1, 1, 0)
    probs = torch.tensor([[0.5, 0.0, 1.0], [0.5, 1.0, 0.0]]).reshape(1, 2, 3, 1, 1)
    target = torch.tensor([1, 1, 0]).reshape(1, 3, 1, 1)
    weight = torch.ones(1, 3, 1, 1)
    plain = dice_per_class(probs, target, weight, activation="none", smooth=0.0)
    # background: p=(.5,0,1), g=(0,0,1): 2*1 / (1.5+1); foreground: 2*1.5 / (1.5+2)
    assert plain.tolist() == pytest.approx([2 / 2.5, 3 / 3.5])
    squared = dice_per_class(probs, target, weight, activation="none", squared=True, smooth=0.0)
    # V-Net: background 2*1 / (0.25+1 + 1); foreground 2*1.5 / (0.25+1 + 2)
    assert squared.tolist() == pytest.approx([2 / 2.25, 3 / 3.25])
    loss = dice_loss(probs, target, weight, activation="none", squared=True, include_background=False, smooth=0.0)
    assert loss.item() == pytest.approx(1 - 3 / 3.25)


def test_weight_scales_voxels_and_masked_dice_only_binarises_it():
    probs = torch.tensor([[0.5, 0.0, 1.0], [0.5, 1.0, 0.0]]).reshape(1, 2, 3, 1, 1)
    target = torch.tensor([1, 255, 0]).reshape(1, 3, 1, 1)  # 255 = unlabeled value, weight 0 below
    weight = torch.tensor([2.0, 0.0, 1.0]).reshape(1, 3, 1, 1)
    # foreground: voxel 0 counts twice: 2*(2*0.5) / (2*0.5 + 2*1)
    fg = dice_per_class(probs, target, weight, activation="none", smooth=0.0)[1]
    assert fg.item() == pytest.approx(2.0 / 3.0)
    # masked: voxels 0 and 2 once each: 2*0.5 / (0.5 + 1)
    masked = masked_dice(probs, target, weight, activation="none", smooth=0.0)
    assert masked.item() == pytest.approx(1 - 1.0 / 1.5)


def test_sigmoid_dice_on_per_channel_targets():
    logits = torch.tensor([[0.0, 0.0, 0.0]]).reshape(1, 1, 3, 1, 1)  # sigmoid 0.5 everywhere
    target = torch.tensor([[1.0, 0.0, 0.0]]).reshape(1, 1, 3, 1, 1)
    weight = torch.ones(1, 3, 1, 1)
    loss = dice_loss(logits, target, weight, activation="sigmoid", smooth=0.0)
    assert loss.item() == pytest.approx(1 - 1.0 / 2.5)  # 2*0.5 / (1.5 + 1)


LOSSES = {
    "cross_entropy": lambda l, t, w: weighted_cross_entropy(l, t, w, class_weights=[0.5, 1.0, 2.0]),
    "dice": lambda l, t, w: dice_loss(l, t, w),
    "dice_squared": lambda l, t, w: dice_loss(l, t, w, squared=True, include_background=False),
    "masked_dice": masked_dice,
}


@pytest.mark.parametrize("name", LOSSES)
def test_predictions_where_weight_is_zero_change_neither_loss_nor_gradient(name):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, 6)
    target = torch.randint(0, 3, (2, 4, 5, 6))
    weight = (torch.rand(2, 4, 5, 6) > 0.6).float() * torch.rand(2, 4, 5, 6)
    unlabeled = (weight == 0).unsqueeze(1).expand_as(logits)
    changed = torch.where(unlabeled, logits + 10 * torch.randn_like(logits), logits)
    target_changed = torch.where(weight == 0, torch.full_like(target, 255), target)
    results = []
    for x, t in ((logits, target), (changed, target_changed)):
        x = x.clone().requires_grad_(True)
        loss = LOSSES[name](x, t, weight)
        loss.backward()
        results.append((loss.detach(), x.grad))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-7)
    assert results[0][1][unlabeled].abs().max() == 0
    assert results[0][1][~unlabeled].abs().max() > 0  # the loss does depend on labeled voxels


def test_no_labeled_voxel_gives_zero_cross_entropy_with_a_graph():
    logits = torch.randn(1, 2, 3, 3, 3, requires_grad=True)
    loss = weighted_cross_entropy(logits, torch.zeros(1, 3, 3, 3, dtype=torch.long), torch.zeros(1, 3, 3, 3))
    loss.backward()
    assert loss.item() == 0 and logits.grad.abs().max() == 0


def test_bad_shapes_and_labels_are_segnets_errors():
    logits = torch.randn(1, 2, 3, 3, 3)
    ones = torch.ones(1, 3, 3, 3)
    with pytest.raises(SegNetsError, match="weight map"):
        dice_loss(logits, torch.zeros(1, 3, 3, 3, dtype=torch.long), torch.ones(1, 3, 3))
    with pytest.raises(SegNetsError, match="outside 0..1"):
        weighted_cross_entropy(logits, torch.full((1, 3, 3, 3), 2), ones)
    with pytest.raises(SegNetsError, match="class_weights"):
        weighted_cross_entropy(logits, torch.zeros(1, 3, 3, 3, dtype=torch.long), ones, class_weights=[1.0])
    with pytest.raises(SegNetsError, match="activation"):
        dice_loss(logits, torch.zeros(1, 3, 3, 3, dtype=torch.long), ones, activation="relu")
