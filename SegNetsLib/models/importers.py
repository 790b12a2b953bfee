"""Reading a model to import: a model folder or zip, or bare weights whose card the user describes.

Bare weights are a safetensors file or a ``.pt``/``.pth`` state dict (read with ``weights_only=True``);
official ConResNet / 3D RU-Net checkpoints go through ``SegNetsLib.nets.load_official``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from SegNetsLib import nets
from SegNetsLib.card.card import ChannelInfo, LabelInfo, ModelCard, Normalization
from SegNetsLib.card.factory import make_card
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models.limits import check_file_size, check_network_size
from SegNetsLib.models.store import build_network, describe_network, load_folder, load_zip, meta_network
from SegNetsLib.models.weights import (
    TORCH_SUFFIXES,
    check_shapes,
    load_checked,
    read_safetensors,
    read_torch_state_dict,
    shapes_of,
    strip_prefix,
)

WEIGHT_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)

# What the authors' checkpoints were trained for (SegNetsLib/nets docs; the papers): used when an
# official checkpoint is imported without --labels / --in-channels.
OFFICIAL_CARDS: dict[str, dict[str, Any]] = {
    "conresnet": {
        "in_channels": [ChannelInfo(n, "MR") for n in ("FLAIR", "T1", "T1ce", "T2")],
        "labels": ["enhancing tumor", "whole tumor", "tumor core"],
        "multi_label": True,
        "normalization": Normalization("zscore", None, True),
        "modality": "MR",
    },
    "runet": {
        "in_channels": [ChannelInfo("T2", "MR")],
        "labels": ["tumor"],
        "normalization": Normalization("zscore", None, True),
        "target_spacing": (1.0, 1.0, 4.0),
        "modality": "MR",
    },
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_weights_file(path: Path) -> dict:
    """Tensors of a bare weights file (safetensors or a weights-only ``.pt``/``.pth``), refused unread
    when the file is larger than any network SegNets loads."""
    check_file_size(path)
    if path.suffix.lower() == ".safetensors":
        return read_safetensors(path)
    return strip_prefix(read_torch_state_dict(path))


def _card_fields(
    path: Path, architecture: str | None, defaults: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    """make_card arguments for bare weights: ``defaults`` overridden by the options the user gave."""
    fields = {**defaults, **options}
    if "labels" not in fields:
        raise SegNetsError(f"{path.name}: name the labels the weights predict (--labels liver,tumor).")
    fields.setdefault("name", f"{architecture} imported from {path.name}")
    fields["description"] = fields.get("description") or f"Imported from {path.name} (sha256 {_sha256(path)})."
    return fields


def _own_weights(path: Path, architecture: str, tensors: dict, options: dict[str, Any]) -> tuple[nn.Module, ModelCard]:
    """Weights saved from a SegNets network (our key names)."""
    card = make_card(architecture, **_card_fields(path, architecture, {}, options))
    try:
        shape_only = meta_network(card, path.name)  # names, shapes and size checked before the network takes memory
        check_shapes(shapes_of(tensors), shape_only, path.name, describe_network(card))
        check_network_size(shape_only, path.name, describe_network(card))
        return load_checked(build_network(card, source=path.name), tensors, path.name, describe_network(card)), card
    except SegNetsError as error:
        if architecture in OFFICIAL_CARDS:
            raise SegNetsError(
                f"{str(error).rstrip('.')}; if it is an authors' checkpoint, import it as official (--official)."
            ) from None
        raise


def _official_weights(
    path: Path, architecture: str, tensors: dict, options: dict[str, Any]
) -> tuple[nn.Module, ModelCard]:
    """An authors' checkpoint: ``nets.load_official`` reads widths, inputs and classes from the tensors."""
    overrides = dict(options.pop("build_args", None) or {})
    try:
        with torch.device("meta"), warnings.catch_warnings():  # sized before built; copies into meta are no-ops
            warnings.simplefilter("ignore", UserWarning)
            shape_only = nets.load_official(architecture, tensors, **overrides)
    except SegNetsError:
        raise
    except Exception as error:  # noqa: BLE001 - untrusted tensors and overrides may fail in any way
        raise SegNetsError(f"{path.name}: not an official {architecture} checkpoint ({error}).") from None
    check_network_size(shape_only, path.name, f"official {architecture}")
    net = nets.load_official(architecture, tensors, **overrides)
    in_count, class_count = int(net.in_channels), int(net.num_classes)
    defaults = dict(OFFICIAL_CARDS.get(architecture, {}))
    if len(defaults.get("in_channels", ())) != in_count:
        defaults["in_channels"] = in_count
    if len(defaults.get("labels", ())) + (0 if defaults.get("multi_label") else 1) != class_count:
        defaults.pop("labels", None)
    fields = _card_fields(path, architecture, defaults, options)
    fields["preset"] = "paper"
    fields["build_args"] = {"base_channels": int(net.base_channels), **overrides}
    card = make_card(architecture, **fields)
    if len(card.in_channels) != in_count:
        raise SegNetsError(f"{path.name}: the checkpoint takes {in_count} input channels, not {len(card.in_channels)}.")
    if card.num_classes != class_count:
        raise SegNetsError(
            f"{path.name}: the checkpoint predicts {class_count} classes but the labels give {card.num_classes} "
            f"({'no background, multi-label' if card.multi_label else 'background included'})."
        )
    return net, card


def read_model(
    path: Path,
    *,
    architecture: str | None = None,
    official: bool = False,
    in_channels: int | Sequence[ChannelInfo | str] | None = None,
    labels: Sequence[LabelInfo | str] | Mapping[int, str] | None = None,
    id: str | None = None,
    version: str | None = None,
    name: str | None = None,
    **card_fields: Any,
) -> tuple[nn.Module, ModelCard]:
    """(network, card) for the model at ``path``, checked tensor by tensor against its architecture.

    Folders and zips carry their card; ``id``/``version``/``name`` rename the import. Bare weights
    need ``architecture`` and ``labels`` (``in_channels`` defaults to 1); ``official`` reads an authors'
    checkpoint through ``nets.load_official`` (paper preset, paper labels by default). Further
    ``card_fields`` (``preset``, ``build_args``, ``modality``, ``multi_label``, ...) go to ``make_card``.
    """
    if not path.exists():
        raise SegNetsError(f"{path}: no such file or folder.")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".zip":
        given = [
            key
            for key, value in {
                "architecture": architecture,
                "official": official,
                "in_channels": in_channels,
                "labels": labels,
                **card_fields,
            }.items()
            if value not in (None, False)
        ]
        if given:
            raise SegNetsError(
                f"{path.name}: a model folder or zip carries its own card; {given[0]} applies only to bare weights."
            )
        net, card = load_folder(path) if path.is_dir() else load_zip(path)
    elif suffix in WEIGHT_SUFFIXES:
        if architecture not in nets.ARCHITECTURES:
            raise SegNetsError(
                f"{path.name}: bare weights need their architecture named (--architecture), one of {', '.join(nets.ARCHITECTURES)}"
                + (f"; {architecture!r} is unknown." if architecture else ".")
            )
        options = {
            k: v for k, v in {"in_channels": in_channels, "labels": labels, **card_fields}.items() if v is not None
        }
        reader = _official_weights if official else _own_weights
        net, card = reader(path, architecture, read_weights_file(path), options)
    else:
        raise SegNetsError(
            f"{path.name}: cannot import a {suffix or 'suffix-less'} file; give a model folder, a .zip, "
            "or weights as .safetensors, .pt or .pth."
        )
    renamed = {key: value for key, value in (("id", id), ("version", version), ("name", name)) if value}
    return net, dataclasses.replace(card, **renamed) if renamed else card
