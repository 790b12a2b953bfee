"""objective(architecture, output, target, weight): each network's paper loss, trained end to end on tiny
real networks; unlabeled voxels (weight 0) change neither the loss nor its gradient."""

from __future__ import annotations

import math

import pytest
import torch

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.losses import objective
from SegNetsLib.nets import build
from SegNetsLib.nets.outputs import ConResNetOutput, SegmentationOutput

TINY = {
    "unet3d": {"base_channels": 2},
    "vnet": {"base_channels": 2, "levels": 3},
    "conresnet": {"base_channels": 8},
    "runet": {"base_channels": 4},
}
SHAPE = (1, 1, 8, 16, 16)


def _sparse_problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An image with a bright box, its label, and a weight map labeling 3 axial slices (others 255/0)."""
    torch.manual_seed(seed)
    image = torch.randn(SHAPE) * 0.1
    label = torch.zeros(SHAPE[0], *SHAPE[2:], dtype=torch.long)
    label[:, 2:6, 4:11, 5:12] = 1
    image[:, 0][label == 1] += 1.0
    weight = torch.zeros(label.shape)
    weight[:, [1, 3, 4]] = 1.0
    target = torch.where(weight > 0, label, torch.full_like(label, 255))
    return image, target, weight


@pytest.mark.parametrize("architecture", list(TINY))
def test_objective_trains_each_network_and_ignores_unlabeled_targets(architecture):
    image, target, weight = _sparse_problem()
    torch.manual_seed(1)
    net = build(architecture, 1, 2, **TINY[architecture]).train()
    output = net(image)
    loss = objective(architecture, output, target, weight)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
    # another value (a wrong class, even) where nothing is labeled: same loss, same graph
    other = torch.where(weight > 0, target, torch.randint_like(target, 0, 2))
    assert objective(architecture, output, other, weight).item() == pytest.approx(loss.item(), rel=1e-6)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def _grad_of(architecture, output_factory, target, weight):
    tensors, output = output_factory()
    loss = objective(architecture, output, target, weight)
    grads = torch.autograd.grad(loss, tensors)
    return loss.detach(), grads


@pytest.mark.parametrize("architecture", ["unet3d", "vnet", "conresnet"])
def test_predictions_where_weight_is_zero_change_neither_loss_nor_gradient(architecture):
    _, target, weight = _sparse_problem()
    torch.manual_seed(2)
    heads = [torch.randn(1, 2, *SHAPE[2:]) for _ in range(4)]
    unlabeled = (weight == 0).unsqueeze(1).expand_as(heads[0])
    noisy = [torch.where(unlabeled, h + 5 * torch.randn_like(h), h) for h in heads]

    def factory(values):
        def make():
            tensors = [v.clone().requires_grad_(True) for v in values]
            if architecture == "conresnet":
                return tensors, ConResNetOutput(logits=tensors[0], residual_logits=tensors[1:])
            return tensors[:1], SegmentationOutput(logits=tensors[0])

        return make

    loss_a, grads_a = _grad_of(architecture, factory(heads), target, weight)
    loss_b, grads_b = _grad_of(architecture, factory(noisy), target, weight)
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-6)
    for a, b in zip(grads_a, grads_b):
        assert torch.allclose(a, b, atol=1e-8)
        assert a[unlabeled].abs().max() == 0


def test_vnet_objective_is_the_squared_dice_of_the_foreground_by_hand():
    # two voxels, foreground probabilities 0.5 and 0.75, truth 1 and 0:
    # Dice = 2 * 0.5 / ((0.25 + 0.5625) + 1)
    probs = torch.tensor([[0.5, 0.25], [0.5, 0.75]]).reshape(1, 2, 2, 1, 1)
    target = torch.tensor([1, 0]).reshape(1, 2, 1, 1)
    loss = objective("vnet", SegmentationOutput(logits=probs.log()), target, torch.ones(1, 2, 1, 1))
    assert loss.item() == pytest.approx(1 - 1 / 1.8125, abs=1e-5)


def test_unet3d_objective_class_weights_and_optional_dice():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]).reshape(1, 2, 2, 1, 1)  # p(class 0) = .5, .75
    target = torch.tensor([0, 1]).reshape(1, 2, 1, 1)
    weight = torch.ones(1, 2, 1, 1)
    plain = objective("unet3d", SegmentationOutput(logits), target, weight)
    assert plain.item() == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-6)
    weighted = objective("unet3d", SegmentationOutput(logits), target, weight, class_weights=[1.0, 3.0])
    assert weighted.item() == pytest.approx((math.log(2) + 3 * math.log(4)) / 4, rel=1e-6)
    # foreground Dice: p = (0.5, 0.25), g = (0, 1): 2 * 0.25 / (0.75 + 1)
    with_dice = objective("unet3d", SegmentationOutput(logits), target, weight, dice_weight=2.0)
    assert with_dice.item() == pytest.approx(plain.item() + 2 * (1 - 0.5 / 1.75), abs=1e-5)


def test_objective_rejects_unknown_architectures_options_and_outputs():
    logits = torch.zeros(1, 2, 2, 2, 2)
    target = torch.zeros(1, 2, 2, 2, dtype=torch.long)
    weight = torch.ones(1, 2, 2, 2)
    with pytest.raises(SegNetsError, match="no training objective"):
        objective("resnet", SegmentationOutput(logits), target, weight)
    with pytest.raises(SegNetsError, match="3D U-Net objective only"):
        objective("vnet", SegmentationOutput(logits), target, weight, class_weights=[1.0, 1.0])
    with pytest.raises(SegNetsError, match="ConResNetOutput"):
        objective("conresnet", SegmentationOutput(logits), target, weight)
    with pytest.raises(SegNetsError, match="RUNetOutput"):
        objective("runet", SegmentationOutput(logits), target, weight)
