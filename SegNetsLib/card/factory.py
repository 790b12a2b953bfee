"""Making cards: fresh ones for new models (``make_card``), derived ones for fine-tuned versions (``derive_card``)."""

from __future__ import annotations

import copy
import datetime
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from SegNetsLib import __version__
from SegNetsLib.card.card import ChannelInfo, LabelInfo, ModelCard, Normalization, Provenance, RoiSettings
from SegNetsLib.card.schema import finite_or_none, validate_card
from SegNetsLib.card.versions import bump, latest, version_key
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume


class HasVersions(Protocol):
    """Anything that lists the versions stored for a model id (a ``ModelLibrary``)."""

    def versions(self, model_id: str) -> list[str]: ...


FIRST_VERSION = "1.0.0"
# distinct, colour-blind-friendly segment colours (Okabe-Ito palette, then tints), RGB in [0, 1]
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.902, 0.624, 0.0),
    (0.337, 0.706, 0.914),
    (0.0, 0.620, 0.451),
    (0.941, 0.894, 0.259),
    (0.0, 0.447, 0.698),
    (0.835, 0.369, 0.0),
    (0.800, 0.475, 0.655),
    (0.6, 0.6, 0.6),
)


def now_utc() -> str:
    """The current time as ISO 8601 UTC, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def slug(text: str) -> str:
    """A model id made from free text: lower case ASCII letters, digits and '-' (accents dropped). Letters or
    digits with no ASCII form (Лёгкие, 肝臓) add 8 hex digits of the text's sha256, so such names keep apart."""
    decomposed = unicodedata.normalize("NFKD", text)
    found = re.sub(r"[^a-z0-9]+", "-", decomposed.encode("ascii", "ignore").decode().lower()).strip("-")
    if not any(c.isalnum() and not c.isascii() for c in decomposed):
        return found[:100] or "model"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{found[:91] or 'model'}-{digest}"


def legacy_slug(text: str) -> str | None:
    """The id :func:`slug` gave ``text`` before it dropped accents (``Lebér``: ``leb-r``, now ``leber``), so that
    models saved then are still found by their names; None where it gave the same id, or where the name has letters
    without an ASCII form (all of those became ``model``)."""
    if any(c.isalnum() and not c.isascii() for c in unicodedata.normalize("NFKD", text)):
        return None
    old = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:100] or "model"
    return old if old != slug(text) else None


def _labels(labels: Sequence[LabelInfo | str] | Mapping[int, str]) -> list[LabelInfo]:
    if isinstance(labels, Mapping):
        labels = [
            LabelInfo(int(value), name, PALETTE[i % len(PALETTE)]) for i, (value, name) in enumerate(labels.items())
        ]
    return [
        label if isinstance(label, LabelInfo) else LabelInfo(i + 1, str(label), PALETTE[i % len(PALETTE)])
        for i, label in enumerate(labels)
    ]


def _channels(in_channels: int | Sequence[ChannelInfo | str], modality: str) -> list[ChannelInfo]:
    if isinstance(in_channels, int):
        names = [modality] if in_channels == 1 else [f"{modality} {i + 1}" for i in range(in_channels)]
        return [ChannelInfo(name, modality) for name in names]
    return [c if isinstance(c, ChannelInfo) else ChannelInfo(str(c), modality) for c in in_channels]


def make_card(
    architecture: str,
    labels: Sequence[LabelInfo | str] | Mapping[int, str],
    *,
    in_channels: int | Sequence[ChannelInfo | str] = 1,
    modality: str = "CT",
    name: str | None = None,
    id: str | None = None,
    version: str = FIRST_VERSION,
    preset: str = "default",
    build_args: Mapping[str, Any] | None = None,
    **fields: Any,
) -> ModelCard:
    """A new, valid card with sensible defaults.

    labels: LabelInfo objects, names (values 1, 2, ... with palette colours) or {value: name}.
    in_channels: a count (named after ``modality``) or ChannelInfo objects / names.
    ``build_args`` are constructor overrides for ``nets.build`` (``preset`` is added); ``fields`` set any
    other card field (``target_spacing``, ``normalization``, ``patch_size``, ``roi``, ``description``...).
    Normalization defaults to a soft-tissue CT window for CT and z-score over nonzero voxels otherwise; RoI
    localization to the network's own coarse pass, and for a 3D RU-Net to its Global Image Encoder (the paper's).
    """
    label_list = _labels(labels)
    fields.setdefault("roi", RoiSettings(locator="runet") if architecture == "runet" else RoiSettings())
    name = name or f"{architecture} {', '.join(label.name for label in label_list)}"
    fields.setdefault(
        "normalization",
        Normalization("ct_window", (-160.0, 240.0))
        if modality.upper() == "CT"
        else Normalization("zscore", None, True),
    )
    provenance = fields.pop("provenance", None) or Provenance()
    provenance.created = provenance.created or now_utc()
    provenance.segnets_version = provenance.segnets_version or __version__
    card = ModelCard(
        id=id or slug(name),
        name=name,
        version=version,
        architecture=architecture,
        in_channels=_channels(in_channels, modality),
        labels=label_list,
        build_args={"preset": preset, **(build_args or {})},
        provenance=provenance,
        **fields,
    )
    validate_card(card.to_dict())
    return card


def volume_sha256(volume: Volume) -> str:
    """sha256 (hex) of ``volume``'s voxel array and its dtype: the same voxels give the same digest."""
    array = np.ascontiguousarray(volume.array)
    digest = hashlib.sha256(array.dtype.str.encode())
    digest.update(array.reshape(-1).view(np.uint8))  # the bytes themselves, not a copy
    return digest.hexdigest()


def volume_record(
    volume: Volume,
    name: str = "",
    annotated_slices: Mapping[int, Iterable[int]] | None = None,
    labeled_voxels: int | None = None,
) -> dict[str, Any]:
    """Identity of a training volume for ``Provenance.trained_on``: name, sha256 of its voxel array,
    shape [k, j, i], spacing (i, j, k) mm, annotated slices per axis and labeled voxel count."""
    record: dict[str, Any] = {
        "name": name,
        "sha256": volume_sha256(volume),
        "shape": [int(s) for s in volume.array.shape],
        "spacing": [float(s) for s in volume.spacing],
    }
    if annotated_slices is not None:
        record["annotated_slices"] = {
            str(axis): sorted(int(s) for s in slices) for axis, slices in annotated_slices.items()
        }
    if labeled_voxels is not None:
        record["labeled_voxels"] = int(labeled_voxels)
    return record


def next_version(library: HasVersions | None, card: ModelCard, part: str = "minor") -> str:
    """The version a model derived from ``card`` gets: one ``part`` above the highest version of
    ``card.id`` in ``library`` (or above ``card.version``), so it never collides with an existing one."""
    versions = [card.version]
    if library is not None:
        versions += library.versions(card.id)
    return bump(latest(versions), part)


def derive_card(
    base: ModelCard,
    *,
    version: str,
    trained_on: Sequence[Mapping[str, Any]] = (),
    annotated_slices: Mapping[int | str, Iterable[int]] | None = None,
    iterations: int = 0,
    seconds: float = 0.0,
    validation: Mapping[str, float | None] | None = None,
    notes: str = "",
    id: str | None = None,
    name: str | None = None,
    round: int = 0,
) -> ModelCard:
    """A card for weights fine-tuned (or retrained) from ``base``: same architecture, labels and
    preprocessing, a new version, and provenance naming the base model and what the new weights saw.

    Undefined metrics (NaN, e.g. Dice of a class absent from the validation slices) are stored as null.
    """
    if id in (None, base.id) and version_key(version) <= version_key(base.version):
        raise SegNetsError(
            f"version {version} must be higher than the base model's {base.version}; "
            "a derived model never replaces its base (use next_version())."
        )
    card = copy.deepcopy(base)
    card.id = id or base.id
    card.version = version
    card.name = name or base.name
    card.provenance = Provenance(
        base_model_id=base.id,
        base_model_version=base.version,
        trained_on=[dict(record) for record in trained_on],
        annotated_slices={
            str(axis): sorted(int(s) for s in slices) for axis, slices in (annotated_slices or {}).items()
        },
        iterations=int(iterations),
        seconds=float(seconds),
        validation={key: finite_or_none(value) for key, value in (validation or {}).items()},
        created=now_utc(),
        segnets_version=__version__,
        notes=notes,
        round=int(round),
    )
    validate_card(card.to_dict())
    return card
