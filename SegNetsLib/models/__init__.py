"""Models as portable, safe, versioned files.

A model is a folder (or the same files in one ``.zip``) holding ``card.json`` (a :class:`ModelCard`,
validated against ``SegNetsLib/schemas/card.schema.json``) and ``weights.safetensors``. Model files are
untrusted: nothing is ever unpickled and every tensor is checked against the architecture before loading.

- ``load(path_or_id, device="cpu") -> (net, card)``; ``save(net, card, folder) -> Path``
- ``ModelLibrary(root=None)``: ``list``, ``find``, ``add``, ``import_path``, ``export``, ``remove``
- ``make_card``, ``derive_card``, ``next_version``, ``volume_record`` for new and fine-tuned models
- ``validate_card(dict)``
"""

from .card import (
    ChannelInfo,
    Code,
    LabelInfo,
    ModelCard,
    Normalization,
    Postprocessing,
    Provenance,
    RoiSettings,
    Terminology,
)
from .factory import derive_card, make_card, next_version, volume_record
from .library import ModelEntry, ModelLibrary, default_root, load
from .schema import card_schema, read_card, validate_card
from .store import build_network, save

__all__ = [
    "ChannelInfo",
    "Code",
    "LabelInfo",
    "ModelCard",
    "ModelEntry",
    "ModelLibrary",
    "Normalization",
    "Postprocessing",
    "Provenance",
    "RoiSettings",
    "Terminology",
    "build_network",
    "card_schema",
    "default_root",
    "derive_card",
    "load",
    "make_card",
    "next_version",
    "read_card",
    "save",
    "validate_card",
    "volume_record",
]
