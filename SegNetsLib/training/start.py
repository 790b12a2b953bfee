"""Where a training run starts (a new architecture or a library model) and a digest to compare weights across ranks."""

from __future__ import annotations

import hashlib

from torch import nn

from SegNetsLib import nets
from SegNetsLib.card.card import ModelCard
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models.library import load as load_model
from SegNetsLib.training.dataset import LabeledDataset


def weights_digest(net: nn.Module) -> str:
    """sha256 of every parameter and buffer, by sorted name: equal digests mean equal weights."""
    digest = hashlib.sha256()
    for key, value in sorted(net.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def starting_point(start: str, dataset: LabeledDataset) -> tuple[nn.Module | None, ModelCard | None, str]:
    """(net, card, architecture) for an existing model to continue from, or (None, None, name) for a new one."""
    if start in nets.ARCHITECTURES:
        return None, None, start
    net, card = load_model(start)
    names = [label.name for label in card.labels]
    if names != list(dataset.labels.values()) or card.multi_label:
        raise SegNetsError(
            f"model {start!r} segments {names}, but dataset {dataset.name!r} labels {list(dataset.labels.values())}."
        )
    if len(card.in_channels) != len(dataset.channels):
        raise SegNetsError(
            f"model {start!r} takes {len(card.in_channels)} channel(s); dataset {dataset.name!r} has {len(dataset.channels)}."
        )
    return net, card, card.architecture
