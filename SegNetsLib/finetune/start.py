"""Where fine-tuning starts: a model (id, folder or zip) to fine-tune, or an architecture to train from scratch.

A new network from scratch gets a card whose preprocessing is derived from the annotation: the
intensity window spans the annotated voxels' intensities, and the grid is the volume's own (optionally
coarser in-plane, ``FinetuneOptions.scratch_downsample``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from SegNetsLib.card.card import LabelInfo, ModelCard, Normalization, Postprocessing, RoiSettings
from SegNetsLib.card.factory import make_card, volume_sha256
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume
from SegNetsLib.models.library import load
from SegNetsLib.nets import ARCHITECTURES, build

# a network sized for a CPU budget of about two minutes (measured on ts_ct_full, see the README). The others are sized
# alike: 0.61-0.65 GFLOP per 8 x 48 x 48 patch against the 3D U-Net's 0.47. At their default widths (7-23 GFLOP) a
# correction round (80 iterations) of the TUNE set's MR liver took 94-243 s; sized, 8-29 s (docs/finetuning.md)
SCRATCH_BUILD_ARGS: dict[str, dict] = {
    "unet3d": {"base_channels": 4, "levels": 3, "norm": "instance"},
    "vnet": {"base_channels": 4, "levels": 3},
    "conresnet": {"base_channels": 8},
    "runet": {"base_channels": 8},
}


@dataclass
class Start:
    """The network training begins from, its card, and what it was (None for a new network)."""

    net: nn.Module
    card: ModelCard
    base_id: str | None
    same_volume: bool = False
    """The model's weights were last trained on the volume about to be fine-tuned on (:func:`trained_on_volume`)."""

    @property
    def from_scratch(self) -> bool:
        return self.base_id is None

    @property
    def continued(self) -> bool:
        """A model from an earlier round on painted slices of this volume: it has seen nothing but those
        slices, so its result needs the clean-up and range limits of a new network's. A model trained on
        painted slices of other volumes (every slice of other patients, say) is a pretrained model here."""
        return not self.from_scratch and self.same_volume and painted_lineage(self.card)

    @property
    def painted_only(self) -> bool:
        """Trained (or about to be) on painted slices alone: from scratch, or continued from such a round."""
        return self.from_scratch or self.continued


SCRATCH_NOTES = "trained from scratch on annotated slices by segnets finetune"
FINETUNED_NOTES = "fine-tuned on annotated slices by segnets finetune"


SCRATCH_DESCRIPTION = "Trained from scratch by segnets finetune on one volume's annotated slices."


def painted_lineage(card: ModelCard) -> bool:
    """Whether ``card``'s weights began as a new network trained on painted slices (its description says so;
    fine-tuned versions keep it), rather than as a model trained on whole volumes."""
    return card.description == SCRATCH_DESCRIPTION or card.provenance.notes.startswith(SCRATCH_NOTES)


def trained_on_volume(card: ModelCard, volume: Volume) -> bool:
    """Whether ``card``'s weights were last trained on ``volume`` (``Provenance.trained_on``: the same voxels, shape
    and spacing)."""
    records = card.provenance.trained_on
    if not records:
        return False
    last = records[-1]
    shape, spacing = last.get("shape"), last.get("spacing")
    if shape is not None and [int(n) for n in shape] != [int(n) for n in volume.array.shape]:
        return False
    if spacing is not None and not np.allclose(spacing, volume.spacing, rtol=1e-4):
        return False
    return last.get("sha256") == volume_sha256(volume)


def round_of(card: ModelCard) -> int:
    """The interactive round ``card``'s weights come from (``Provenance.round``): 1 trained from scratch (or
    fine-tuned) on painted slices, also for cards written before rounds were recorded; n for the n-th round
    after it; 0 for a model never fine-tuned on painted slices."""
    if card.provenance.round:
        return int(card.provenance.round)
    notes = card.provenance.notes
    return 1 if notes.startswith(SCRATCH_NOTES) or notes.startswith(FINETUNED_NOTES) else 0


def is_architecture(start: str | os.PathLike) -> bool:
    return isinstance(start, str) and start in ARCHITECTURES


def guess_modality(image: np.ndarray) -> str:
    """ "CT" when intensities look like Hounsfield units (air near -1000), else "MR"."""
    return "CT" if float(np.percentile(image, 1)) < -500.0 else "MR"


def annotation_window(image: np.ndarray, labels: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Intensity window (low, high) around the annotated foreground, widened by its own width on each side.

    image, labels, weight: [k, j, i]. Uses the 0.5 and 99.5 percentiles of the labelled foreground
    voxels (all annotated voxels when no foreground is annotated).
    """
    values = image[(weight > 0) & (labels > 0)]
    if values.size == 0:
        values = image[weight > 0]
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    width = max(high - low, 1e-3 * max(abs(low), abs(high), 1.0))
    return low - width, high + width


def scratch_start(
    architecture: str,
    image: Volume,
    labels: np.ndarray,
    weight: np.ndarray,
    classes: Sequence[int],
    patch_size: Sequence[int],
    downsample: int = 1,
    label_names: dict[int, str] | None = None,
    build_args: dict | None = None,
    across: int = 0,
) -> Start:
    """A new ``architecture`` network and its card for ``classes`` (label values) learned on ``image`` alone, on a
    grid ``downsample`` times coarser along the two array axes other than ``across`` (the painting axis)."""
    names = label_names or {}
    channels = image.num_channels
    if channels == 1:
        normalization = Normalization("ct_window", annotation_window(image.array, labels, weight))
    else:  # one window cannot fit channels of different scales (FLAIR and T1c, say): each is z-scored on its own
        normalization = Normalization("zscore")
    args = {**SCRATCH_BUILD_ARGS.get(architecture, {}), **(build_args or {})}
    spacing = tuple(image.spacing)
    if downsample > 1:
        spacing = tuple(s if 2 - ijk == across else s * downsample for ijk, s in enumerate(spacing))
    card = make_card(
        architecture,
        {int(c): names.get(int(c), f"label {int(c)}") for c in classes},
        modality=guess_modality(image.array),
        name=f"{architecture} fine-tuned on {', '.join(names.get(int(c), f'label {int(c)}') for c in classes)}",
        in_channels=channels,
        build_args=args,
        normalization=normalization,
        target_spacing=spacing if downsample > 1 else None,
        patch_size=tuple(int(p) for p in patch_size),
        roi=RoiSettings(mode="off"),
        postprocessing=Postprocessing(keep_largest_component=len(classes) == 1, fill_holes=len(classes) == 1),
        description=SCRATCH_DESCRIPTION,
    )
    net = build(architecture, channels, card.num_classes, **args)
    return Start(net, card, None)


def model_start(
    reference: str | os.PathLike | tuple[nn.Module, ModelCard],
    classes: Sequence[int],
    extend_head_ok: bool,
    volume: Volume,
) -> Start:
    """The model to fine-tune on ``volume`` (loaded, or an in-memory (net, card) pair); check it knows every
    annotated class (or extend its head)."""
    net, card = reference if isinstance(reference, tuple) else load(reference)
    if card.multi_label:
        raise SegNetsError(f"model {card.id!r} is multi-label (sigmoid); fine-tuning supports softmax models only.")
    known = {label.value for label in card.labels}
    missing = [int(c) for c in classes if int(c) not in known]
    if missing:
        if not extend_head_ok:
            raise SegNetsError(
                f"the annotation has label value(s) {missing} that model {card.id!r} does not have "
                f"(it has {sorted(known)}); add --extend-head to add them as new classes."
            )
        net, card = extend_head(net, card, missing)
    return Start(net, card, card.id, trained_on_volume(card, volume))


def extend_head(net: nn.Module, card: ModelCard, new_values: Sequence[int]) -> tuple[nn.Module, ModelCard]:
    """A copy of ``net`` whose output layers gain one class per value in ``new_values``, and its card.

    Every convolution producing the class logits (out_channels == card.num_classes, kernel 1) is widened;
    existing classes keep their weights and each new class starts as a copy of the background class with
    its bias lowered by 2, so the extended network first predicts exactly what the old one did.
    """
    old = card.num_classes
    net = copy.deepcopy(net)
    heads = [
        (name, module)
        for name, module in net.named_modules()
        if isinstance(module, nn.Conv3d) and module.out_channels == old and module.kernel_size == (1, 1, 1)
    ]
    if not heads:
        raise SegNetsError(f"model {card.id!r}: no 1x1x1 output convolution with {old} classes was found to extend.")
    extra = len(new_values)
    for name, head in heads:
        wider = nn.Conv3d(head.in_channels, old + extra, 1, bias=head.bias is not None)
        with torch.no_grad():
            wider.weight[:old] = head.weight
            wider.weight[old:] = head.weight[:1]
            if head.bias is not None:
                wider.bias[:old] = head.bias
                wider.bias[old:] = head.bias[:1] - 2.0
        parent_name, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent_name) if parent_name else net, child, wider)
    card = copy.deepcopy(card)
    card.labels = card.labels + [LabelInfo(int(v), f"label {int(v)}", (0.5, 0.5, 0.5)) for v in new_values]
    return net, card
