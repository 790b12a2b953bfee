"""ConResNet loss and 3D RU-Net hybrid loss: hand-computed examples, targets, unlabeled voxels ignored."""

from __future__ import annotations

import math

import pytest
import torch

from SegNetsLib.core.box import Box
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.losses import conresnet_loss, runet_hybrid_loss
from SegNetsLib.losses.conresnet import residual_target
from SegNetsLib.losses.runet import coarse_target, contour_target
from SegNetsLib.nets.outputs import ConResNetOutput, RUNetOutput

LN2 = math.log(2)


def test_residual_target_marks_label_changes_between_labeled_slices():
    truth = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]).reshape(1, 1, 3, 1, 2)
    weight = torch.ones(1, 3, 1, 2)
    weight[0, 1, 0, 0] = 0
    target, res_weight = residual_target(truth, weight)
    assert target.flatten().tolist() == [0, 0, 1, 0, 0, 1]
    assert res_weight.flatten().tolist() == [0, 0, 0, 1, 0, 1]  # slice 0 and pairs with an unlabeled voxel out


def test_contour_is_label_minus_in_plane_erosion():
    truth = torch.zeros(1, 1, 2, 5, 5)
    truth[0, 0, :, 1:4, 1:4] = 1
    contour = contour_target(truth)
    ring = truth.clone()
    ring[0, 0, :, 2, 2] = 0  # 3x3 square: only the centre survives the erosion, in each slice
    assert torch.equal(contour, ring)
    full = torch.ones(1, 1, 1, 3, 3)
    assert contour_target(full).sum() == 0  # the border does not erode (official: cv2.erode's default border)
    edge = torch.zeros(1, 1, 1, 4, 4)
    edge[0, 0, 0, :, :2] = 1  # a structure cut by the left border: contour only along its inner edge (column 1)
    expected = torch.zeros_like(edge)
    expected[0, 0, 0, :, 1] = 1
    assert torch.equal(contour_target(edge), expected)


def test_coarse_target_max_pools_labeled_voxels_only():
    truth = torch.zeros(1, 2, 2, 4, 8)
    truth[:, 0] = 1
    truth[0, 1, 1, 3, 7], truth[0, 0, 1, 3, 7] = 1, 0
    weight = torch.ones(1, 2, 4, 8)
    weight[0, :, :, :4] = 0
    pooled, pooled_weight = coarse_target(truth, weight)
    assert pooled.shape == (1, 2, 1, 1, 2)
    assert pooled[0, 1].flatten().tolist() == [0, 1] and pooled_weight.flatten().tolist() == [0, 1]


def _conresnet_output(logit: float, shape=(1, 2, 4, 1, 1), requires_grad=False) -> ConResNetOutput:
    heads = [torch.full(shape, logit, requires_grad=requires_grad) for _ in range(4)]
    return ConResNetOutput(logits=heads[0], residual_logits=heads[1:])


def test_conresnet_loss_hand_computed():
    # 2 classes, 4 slices of one voxel, labels 0 0 1 1, every logit 0 (p = 0.5)
    target = torch.tensor([0, 0, 1, 1]).reshape(1, 4, 1, 1)
    weight = torch.ones(1, 4, 1, 1)
    dice = 1 - (2 * 0.5 * 2) / (0.5 * 4 + 2 + 1)  # foreground Dice, smooth 1 in the denominator only (official)
    # residual: change at slice 2 only; labeled pairs are slices 1..3 (n = 3), positives weigh ln(3 / 2)
    residual = (math.log(1.5) * LN2 + 2 * LN2) / 3
    expected = dice + LN2 + residual * (1 + 0.5 * 2)
    assert conresnet_loss(_conresnet_output(0.0), target, weight).item() == pytest.approx(expected, rel=1e-6)
    no_deep = conresnet_loss(_conresnet_output(0.0), target, weight, lam=0.0).item()
    assert no_deep == pytest.approx(dice + LN2 + residual, rel=1e-6)


def test_conresnet_loss_multi_label_uses_sigmoid_and_summed_bce():
    target = torch.tensor([0.0, 0.0, 1.0, 1.0]).reshape(1, 1, 4, 1, 1).repeat(1, 2, 1, 1, 1)
    weight = torch.ones(1, 4, 1, 1)
    dice = 1 - (2 * 0.5 * 2) / (0.5 * 4 + 2 + 1)
    residual = (math.log(1.5) * LN2 + 2 * LN2) / 3
    expected = dice + 2 * LN2 + residual * 2  # BCE summed over the 2 channels
    assert conresnet_loss(_conresnet_output(0.0), target, weight).item() == pytest.approx(expected, rel=1e-6)


def test_conresnet_dice_has_no_smooth_in_the_numerator():
    # official BinaryDiceLoss: 2 sum(p y) / (sum p + sum y + 1); a channel absent from the batch has Dice 0
    target = torch.zeros(1, 1, 4, 1, 1)
    weight = torch.ones(1, 4, 1, 1)
    out = _conresnet_output(0.0, shape=(1, 1, 4, 1, 1))
    residual = LN2  # no residual positive: negatives only, weight 1, p = 0.5
    expected = 1.0 + LN2 + residual * (1 + 0.5 * 2)  # Dice term 1 - 0 / (0.5 * 4 + 0 + 1), BCE ln 2
    assert conresnet_loss(out, target, weight).item() == pytest.approx(expected, rel=1e-6)
    assert conresnet_loss(out, target, torch.zeros_like(weight)).item() == 0.0  # nothing labeled: 0


def test_conresnet_residual_bce_has_the_sigmoid_of_issue_7():
    target = torch.tensor([0, 0, 1, 1]).reshape(1, 4, 1, 1)
    weight = torch.ones(1, 4, 1, 1)
    out = _conresnet_output(0.0, requires_grad=True)
    big = ConResNetOutput(out.logits, [torch.full_like(r, 5.0, requires_grad=True) for r in out.residual_logits])
    conresnet_loss(big, target, weight).backward()
    # logits far outside (0.001, 0.999) still get a gradient (the official clamp would give none)
    assert all(r.grad.abs().sum() > 0 for r in big.residual_logits)


def _runet_output(coarse_logit: float, roi_logit: float) -> RUNetOutput:
    coarse = torch.full((1, 2, 1, 1, 1), coarse_logit, requires_grad=True)
    box = Box(0, 0, 0, 2, 4, 4)
    region = torch.full((1, 2, 2, 4, 4), roi_logit, requires_grad=True)
    contour = torch.full((1, 2, 2, 4, 4), roi_logit, requires_grad=True)
    logits = torch.zeros(1, 2, 2, 4, 4)
    return RUNetOutput(
        logits=logits, coarse_logits=coarse, rois=[box], roi_logits=[region], roi_contour_logits=[contour]
    )


def test_runet_hybrid_loss_hand_computed():
    target = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    target[0, 1, 2, 2] = 1  # one foreground voxel: coarse cell positive; its contour is itself
    weight = torch.ones(1, 2, 4, 4)
    global_loss = 1 - (2 * 0.5 + 1e-4) / (0.5 + 1 + 1e-4)
    region = 1 - 2 * 0.5 / (0.5 * 32 + 1)
    expected = global_loss + region + region
    assert runet_hybrid_loss(_runet_output(0.0, 0.0), target, weight).item() == pytest.approx(expected, rel=1e-6)
    half = runet_hybrid_loss(_runet_output(0.0, 0.0), target, weight, contour_weight=0.5).item()
    assert half == pytest.approx(global_loss + 1.5 * region, rel=1e-6)


def test_runet_region_dice_is_pooled_over_rois():
    target = torch.zeros(1, 2, 4, 8, dtype=torch.long)
    target[0, :, :, 4:] = 1
    weight = torch.ones(1, 2, 4, 8)
    coarse = torch.zeros(1, 2, 1, 1, 2)
    boxes = [Box(0, 0, 0, 2, 4, 4), Box(0, 0, 4, 2, 4, 8)]
    rois = [torch.zeros(1, 2, 2, 4, 4) for _ in boxes]
    out = RUNetOutput(
        logits=torch.zeros(1, 2, 2, 4, 8), coarse_logits=coarse, rois=boxes, roi_logits=rois, roi_contour_logits=rois
    )
    pooled = 1 - 2 * (0.5 * 32) / (0.5 * 64 + 32)  # one Dice over both RoIs, not a mean of two Dice values
    total = runet_hybrid_loss(out, target, weight, contour_weight=0.0).item()
    global_loss = 1 - (2 * 0.5 + 1e-4) / (0.5 * 2 + 1 + 1e-4)
    assert total == pytest.approx(global_loss + pooled, rel=1e-6)


def _grads(tensors):
    return [t.grad.clone() for t in tensors]


def test_unlabeled_voxels_change_neither_loss_nor_gradient():
    torch.manual_seed(0)
    shape = (1, 3, 4, 8, 8)
    target = torch.randint(0, 3, (1, 4, 8, 8))
    weight = torch.ones(1, 4, 8, 8)
    weight[:, 1:3] = 0  # two unlabeled slices
    base = [torch.randn(shape) for _ in range(4)]
    changed = [b.clone() for b in base]
    for c in changed:
        c[:, :, 1:3] = torch.randn_like(c[:, :, 1:3]) * 50
    other_target = target.clone()
    other_target[:, 1:3] = 255  # an "unlabeled" value
    results = []
    for heads, tgt in ((base, target), (changed, other_target)):
        leaves = [h.clone().requires_grad_(True) for h in heads]
        loss = conresnet_loss(ConResNetOutput(leaves[0], leaves[1:]), tgt, weight)
        loss.backward()
        results.append((loss.item(), _grads(leaves)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for g0, g1 in zip(results[0][1], results[1][1]):
        assert torch.allclose(g0, g1, atol=1e-7) and torch.all(g0[:, :, 1:3] == 0)


def test_runet_unlabeled_voxels_change_neither_loss_nor_gradient():
    torch.manual_seed(1)
    target = torch.randint(0, 2, (1, 4, 8, 8))
    weight = torch.ones(1, 4, 8, 8)
    weight[:, :2] = 0  # the first coarse slab is unlabeled
    box = Box(0, 0, 0, 4, 8, 8)
    base = [torch.randn(1, 2, 2, 2, 2), torch.randn(1, 2, 4, 8, 8), torch.randn(1, 2, 4, 8, 8)]
    changed = [b.clone() for b in base]
    changed[0][:, :, 0] = 40.0
    changed[1][:, :, :2] = -40.0
    changed[2][:, :, :2] = 40.0
    results = []
    for tensors in (base, changed):
        leaves = [t.clone().requires_grad_(True) for t in tensors]
        out = RUNetOutput(torch.zeros(1, 2, 4, 8, 8), leaves[0], [box], [leaves[1]], [leaves[2]])
        loss = runet_hybrid_loss(out, target, weight)
        loss.backward()
        results.append((loss.item(), _grads(leaves)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for g0, g1 in zip(results[0][1], results[1][1]):
        assert torch.allclose(g0, g1, atol=1e-7)
    assert torch.all(results[0][1][1][:, :, :2] == 0) and torch.all(results[0][1][0][:, :, 0] == 0)


def test_runet_loss_checks_shapes():
    out = _runet_output(0.0, 0.0)
    with pytest.raises(SegNetsError, match="one shape"):
        runet_hybrid_loss(out, torch.zeros(1, 2, 4, 4, dtype=torch.long), torch.ones(1, 2, 4, 5))


def test_contour_weight_ignores_voxels_next_to_unlabeled_ones():
    """A sparse sagittal slice: its in-plane neighbours are unlabeled, so no contour label is known there."""
    from SegNetsLib.losses.runet import contour_weight_map

    weight = torch.zeros(1, 4, 6, 6)
    weight[:, :, :, 3] = 1.0  # one labeled sagittal slice (x = 3)
    assert contour_weight_map(weight).sum() == 0
    weight[:, 1] = 1.0  # one fully labeled axial slice (z = 1)
    contour_weight = contour_weight_map(weight)
    assert torch.equal(contour_weight[:, 1], torch.ones(1, 6, 6))  # volume border counts as labeled
    assert contour_weight[:, [0, 2, 3]].sum() == 0
