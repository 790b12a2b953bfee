"""The model card: everything that makes a network usable on a new volume.

A model on disk is a folder with ``card.json`` (this structure, validated against
``SegNetsLib/card/card.schema.json``) and ``weights.safetensors``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

GENERAL_ANATOMY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
CARD_FORMAT_VERSION = 1  # version of the card.json layout this SegNets writes and reads


@dataclass
class Code:
    """A coded concept (DICOM/SNOMED): coding scheme designator, code value, code meaning."""

    scheme: str
    value: str
    meaning: str

    def as_slicer(self) -> str:
        return f"{self.scheme}^{self.value}^{self.meaning}"


EMPTY_CODE = "^^"


@dataclass
class Terminology:
    """The terminology triplet Slicer tags segments with (category, type, optional modifier and region)."""

    category: Code
    type: Code
    type_modifier: Code | None = None
    anatomic_region: Code | None = None
    anatomic_region_modifier: Code | None = None  # e.g. "Right" of "Lung"
    context: str = GENERAL_ANATOMY_CONTEXT
    anatomic_context: str = ANATOMIC_CONTEXT

    def as_slicer_string(self) -> str:
        """Slicer's serialized TerminologyEntry tag (vtkSlicerTerminologyEntry format)."""

        def code(c: Code | None) -> str:
            return c.as_slicer() if c else EMPTY_CODE

        return "~".join(
            [
                self.context,
                code(self.category),
                code(self.type),
                code(self.type_modifier),
                self.anatomic_context,
                code(self.anatomic_region),
                code(self.anatomic_region_modifier),
            ]
        )

    @classmethod
    def from_slicer_string(cls, text: str) -> Terminology | None:
        """Parse Slicer's ``TerminologyEntry`` tag (the inverse of :meth:`as_slicer_string`); None for an empty or
        malformed tag, or one without a category and type."""

        def code(part: str) -> Code | None:
            parts = part.split("^")
            return Code(*parts) if len(parts) == 3 and any(parts) else None

        fields = text.split("~") if text else []
        if len(fields) != 7:
            return None
        category, type_ = code(fields[1]), code(fields[2])
        if category is None or type_ is None:
            return None
        return cls(
            category=category,
            type=type_,
            type_modifier=code(fields[3]),
            anatomic_region=code(fields[5]),
            anatomic_region_modifier=code(fields[6]),
            context=fields[0],
            anatomic_context=fields[4],
        )


@dataclass
class LabelInfo:
    """One output class: label value in the labelmap, display name, RGB color in [0, 1], terminology."""

    value: int
    name: str
    color: tuple[float, float, float]
    terminology: Terminology | None = None


@dataclass
class ChannelInfo:
    """One input channel: a name ("CT", "FLAIR") and its modality ("CT", "MR")."""

    name: str
    modality: str


@dataclass
class Normalization:
    """Intensity normalization. kind: "ct_window" (clip to window, scale to [0, 1]),
    "zscore" (over the whole volume, or over nonzero voxels when ``nonzero_only``), or "none"."""

    kind: str = "zscore"
    window: tuple[float, float] | None = None
    nonzero_only: bool = False


@dataclass
class RoiSettings:
    """RoI localization: a coarse pass finds the region, boxes are extended, only RoIs are segmented.

    mode: "auto" or "off". locator: "self" (the model on a down-sampled volume), "runet" (the RU-Net
    global image encoder) or a locator model: a library id, "id@version", or a model folder or .zip with
    the same input channels, which segments the whole volume on its own grid (every nonzero label is
    foreground; its own RoI settings are not used). coarse_factor: down-sampling of the "self" coarse pass.
    extension: "padding" (``padding_mm`` on each side), "scale1.5", "scale2" or "fixed" (``fixed_size``
    d, h, w voxels at target spacing).
    """

    mode: str = "auto"
    locator: str = "self"
    coarse_factor: float = 2.0
    extension: str = "padding"
    padding_mm: float = 10.0
    fixed_size: tuple[int, int, int] | None = None


@dataclass
class Postprocessing:
    keep_largest_component: bool = False
    fill_holes: bool = False


@dataclass
class Provenance:
    """Where the weights come from: base model, training data, annotated slices, cost and metrics.

    round: 1 for a model trained from scratch on painted slices, n + 1 for one continued from round n
    after the user painted more slices (0: not trained on painted slices)."""

    base_model_id: str | None = None
    base_model_version: str | None = None
    trained_on: list[dict[str, Any]] = field(default_factory=list)
    annotated_slices: dict[str, list[int]] = field(default_factory=dict)
    iterations: int = 0
    seconds: float = 0.0
    validation: dict[str, float] = field(default_factory=dict)
    created: str = ""
    segnets_version: str = ""
    notes: str = ""
    round: int = 0


@dataclass
class ModelCard:
    """Everything needed to use a network on a new volume. ``build_args`` go to ``nets.build``."""

    id: str
    name: str
    version: str
    architecture: str
    in_channels: list[ChannelInfo]
    labels: list[LabelInfo]
    build_args: dict[str, Any] = field(default_factory=dict)
    multi_label: bool = False
    target_spacing: tuple[float, float, float] | None = None
    orientation: str | None = None
    normalization: Normalization = field(default_factory=Normalization)
    patch_size: tuple[int, int, int] = (64, 128, 128)
    roi: RoiSettings = field(default_factory=RoiSettings)
    postprocessing: Postprocessing = field(default_factory=Postprocessing)
    provenance: Provenance = field(default_factory=Provenance)
    description: str = ""
    format_version: int = CARD_FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        """Network output channels: labels plus background (softmax) or labels alone (multi-label)."""
        return len(self.labels) if self.multi_label else len(self.labels) + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Build a card from its JSON form (validate it against the schema first)."""

        def code(d: dict | None) -> Code | None:
            return Code(**d) if d else None

        def terminology(d: dict | None) -> Terminology | None:
            if not d:
                return None
            return Terminology(
                category=code(d["category"]),
                type=code(d["type"]),
                type_modifier=code(d.get("type_modifier")),
                anatomic_region=code(d.get("anatomic_region")),
                anatomic_region_modifier=code(d.get("anatomic_region_modifier")),
                context=d.get("context", GENERAL_ANATOMY_CONTEXT),
                anatomic_context=d.get("anatomic_context", ANATOMIC_CONTEXT),
            )

        def tuple_or_none(value):
            return tuple(value) if value is not None else None

        normalization = dict(data.get("normalization", {}))
        normalization["window"] = tuple_or_none(normalization.get("window"))
        roi = dict(data.get("roi", {}))
        roi["fixed_size"] = tuple_or_none(roi.get("fixed_size"))
        return cls(
            id=data["id"],
            name=data["name"],
            version=data["version"],
            architecture=data["architecture"],
            in_channels=[ChannelInfo(**c) for c in data["in_channels"]],
            labels=[
                LabelInfo(l["value"], l["name"], tuple(l["color"]), terminology(l.get("terminology")))
                for l in data["labels"]
            ],
            build_args=dict(data.get("build_args", {})),
            multi_label=bool(data.get("multi_label", False)),
            target_spacing=tuple_or_none(data.get("target_spacing")),
            orientation=data.get("orientation"),
            normalization=Normalization(**normalization),
            patch_size=tuple(data.get("patch_size", (64, 128, 128))),
            roi=RoiSettings(**roi),
            postprocessing=Postprocessing(**data.get("postprocessing", {})),
            provenance=Provenance(**data.get("provenance", {})),
            description=data.get("description", ""),
            format_version=int(data.get("format_version", CARD_FORMAT_VERSION)),
        )
