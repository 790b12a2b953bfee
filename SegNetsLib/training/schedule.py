"""Per-architecture training recipes: stages, optimizers, the poly learning rate, the stage's loss.

Optimizers follow the papers / official code where they say (sources in
``shared/research/architectures.md``): V-Net SGD momentum 0.99, lr 1e-4, weight decay 5e-4 (official
prototxt solver); ConResNet Adam lr 1e-4, weight decay 5e-4 (official run.sh); 3D RU-Net Adam (amsgrad)
lr 1e-4 (official train.py). The 3D U-Net paper names SGD without a rate; we use SGD momentum 0.99
(nesterov), lr 1e-2, weight decay 3e-5, the values nnU-Net trains its 3D U-Nets with. Every stage
decays its rate with the poly rule lr * (1 - t/T)^0.9 (ConResNet's schedule, nnU-Net's too).

3D RU-Net trains in two stages as its official train.py does: first the global image encoder and the
locator head alone on the global Dice (40 of 90 epochs there, so 4/9 of the epochs here), then the
whole network on the hybrid loss (global + region + contour Dice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from SegNetsLib import losses

POLY_POWER = 0.9
RUNET_GLOBAL_SHARE = 40 / 90


@dataclass(frozen=True)
class OptimizerRecipe:
    kind: str  # "sgd" or "adam"
    learning_rate: float
    weight_decay: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    amsgrad: bool = False


OPTIMIZERS: dict[str, OptimizerRecipe] = {
    "unet3d": OptimizerRecipe("sgd", 1e-2, weight_decay=3e-5, momentum=0.99, nesterov=True),
    "vnet": OptimizerRecipe("sgd", 1e-4, weight_decay=5e-4, momentum=0.99),
    "conresnet": OptimizerRecipe("adam", 1e-4, weight_decay=5e-4),
    "runet": OptimizerRecipe("adam", 1e-4, amsgrad=True),
}


@dataclass(frozen=True)
class Stage:
    """Epochs [start, end) trained with one loss on one set of parameters.

    name: "global" (RU-Net encoder + locator on the global Dice) or "full" (the whole network).
    """

    name: str
    start: int
    end: int


def has_unused_parameters(architecture: str, stage: Stage) -> bool:
    """True when DistributedDataParallel must look for parameters without gradient: RU-Net's full stage
    decodes a data-dependent number of RoIs (possibly none inside the image on one rank)."""
    return architecture == "runet" and stage.name == "full"


def plan_stages(architecture: str, epochs: int) -> list[Stage]:
    """The stages of ``epochs`` epochs: RU-Net gets a global stage first (at least 1 epoch each)."""
    if architecture != "runet":
        return [Stage("full", 0, max(1, epochs))]
    epochs = max(2, epochs)
    first = min(epochs - 1, max(1, round(RUNET_GLOBAL_SHARE * epochs)))
    return [Stage("global", 0, first), Stage("full", first, epochs)]


def poly_learning_rate(base: float, iteration: int, total: int, power: float = POLY_POWER) -> float:
    """base * (1 - iteration / total) ** power, for iteration in [0, total)."""
    return base * (1.0 - min(iteration, total - 1) / max(total, 1)) ** power


def stage_module(architecture: str, stage: Stage, net: nn.Module) -> nn.Module:
    """The module a stage trains: RU-Net's global part in its global stage, else the network."""
    return net.global_stage() if architecture == "runet" and stage.name == "global" else net


def make_optimizer(architecture: str, module: nn.Module, learning_rate: float | None = None) -> torch.optim.Optimizer:
    """The architecture's optimizer over ``module``'s parameters (``learning_rate`` overrides the recipe's)."""
    recipe = OPTIMIZERS[architecture]
    lr = learning_rate or recipe.learning_rate
    params = [p for p in module.parameters() if p.requires_grad]
    if recipe.kind == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=recipe.momentum, nesterov=recipe.nesterov, weight_decay=recipe.weight_decay
        )
    return torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay, amsgrad=recipe.amsgrad)


def stage_loss(
    architecture: str, stage: Stage, output: Any, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """The stage's loss: the architecture's paper objective, or RU-Net's global Dice in its global stage."""
    if architecture == "runet" and stage.name == "global":
        return losses.runet_global_loss(output, target, weight)
    return losses.objective(architecture, output, target, weight)
