"""Model cards: the JSON Schema covers every field, bad cards name the bad field, card helpers."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from SegNetsLib import nets
from SegNetsLib.card.card import (
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
from SegNetsLib.card.factory import derive_card, make_card, next_version, volume_record
from SegNetsLib.card.schema import card_schema, validate_card
from SegNetsLib.card.versions import bump, latest, version_key
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume

LIVER = Terminology(
    category=Code("SCT", "123037004", "Anatomical Structure"),
    type=Code("SCT", "10200004", "Liver"),
)


def full_card() -> ModelCard:
    """A card with every optional part filled in."""
    return make_card(
        "unet3d",
        [LabelInfo(1, "liver", (0.8, 0.4, 0.3), LIVER), LabelInfo(2, "tumor", (0.2, 0.9, 0.1))],
        in_channels=[ChannelInfo("CT", "CT")],
        build_args={"base_channels": 4, "levels": 2},
        target_spacing=(1.5, 1.5, 3.0),
        orientation="LPS",
        patch_size=(32, 64, 64),
        roi=RoiSettings(mode="auto", extension="fixed", fixed_size=(24, 96, 96)),
        postprocessing=Postprocessing(keep_largest_component=True),
        provenance=Provenance(
            trained_on=[{"name": "ts_ct_sm", "sha256": "0" * 64, "shape": [40, 64, 64], "spacing": [1.5, 1.5, 3.0]}],
            annotated_slices={"0": [3, 9]},
            iterations=200,
            seconds=12.5,
            validation={"dice": 0.9, "dice/tumor": None},
        ),
        description="test card",
    )


def test_schema_covers_every_card_field_and_nothing_else():
    schema = card_schema()
    defs = schema["$defs"]
    props = schema["properties"]
    sections = {
        ModelCard: props,
        ChannelInfo: props["in_channels"]["items"]["properties"],
        LabelInfo: props["labels"]["items"]["properties"],
        Normalization: props["normalization"]["properties"],
        RoiSettings: props["roi"]["properties"],
        Postprocessing: props["postprocessing"]["properties"],
        Provenance: props["provenance"]["properties"],
        Terminology: defs["terminology"]["properties"],
        Code: defs["code"]["properties"],
    }
    for cls, properties in sections.items():
        assert {f.name for f in dataclasses.fields(cls)} == set(properties), cls.__name__
    # required = the dataclass fields without defaults (so from_dict never lacks an argument)
    for cls, required in [
        (ModelCard, schema["required"]),
        (LabelInfo, props["labels"]["items"]["required"]),
        (Code, defs["code"]["required"]),
    ]:
        no_default = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        assert no_default == set(required), cls.__name__


def test_schema_choices_match_the_networks():
    props = card_schema()["properties"]
    assert tuple(props["architecture"]["enum"]) == nets.ARCHITECTURES
    assert tuple(props["build_args"]["properties"]["preset"]["enum"]) == nets.PRESETS


def test_full_card_survives_json_round_trip():
    card = full_card()
    text = json.dumps(validate_card(card.to_dict()))
    again = ModelCard.from_dict(json.loads(text))
    assert again == card
    assert again.labels[0].terminology.as_slicer_string().split("~")[2] == "SCT^10200004^Liver"
    assert again.num_classes == 3
    assert json.loads(text)["format_version"] == 1


def _set(data, path, value):
    *parents, last = path
    for part in parents:
        data = data[part]
    if value is _DELETE:
        del data[last]
    else:
        data[last] = value


_DELETE = object()
BAD_CARDS = [
    (("id",), _DELETE, "field 'id' is required but missing"),
    (("id",), "../escape", "field 'id'"),
    (("name",), 7, "field 'name' must be of type string"),
    (("version",), "v1", "field 'version' is \"v1\" but must match (a semantic version"),
    (("architecture",), "unet2d", "field 'architecture' is \"unet2d\" but must be one of"),
    (("build_args", "preset"), "huge", "field 'build_args.preset'"),
    (("in_channels",), [], "field 'in_channels' must have at least 1 item,"),
    (("in_channels", 0, "modality"), _DELETE, "field 'in_channels[0].modality' is required"),
    (("labels", 0, "color"), [1, 0], "field 'labels[0].color' must have exactly 3 items"),
    (("labels", 0, "color"), "red", "field 'labels[0].color' must be of type array"),
    (("labels", 0, "color", 2), 1.5, "field 'labels[0].color[2]' is 1.5 but must be <= 1"),
    (("labels", 0, "value"), 0, "field 'labels[0].value' is 0 but must be >= 1"),
    (
        ("labels", 1, "name"),
        "tumor\nsegnets: ok",
        "field 'labels[1].name' is \"tumor\\nsegnets: ok\" but must match (one line",
    ),
    (
        ("in_channels", 0, "modality"),
        "CT\x1b[31m",
        "field 'in_channels[0].modality' is \"CT\\u001b[31m\" but must match",
    ),
    (("labels", 1, "value"), 1, "field 'labels[1].value' repeats label value 1"),
    (("labels", 0, "terminology", "category"), _DELETE, "field 'labels[0].terminology.category' is required"),
    (
        ("labels", 0, "terminology", "type", "value"),
        10200004,
        "field 'labels[0].terminology.type.value' must be of type string",
    ),
    (("multi_label",), "yes", "field 'multi_label' must be of type boolean"),
    (("target_spacing", 1), 0, "field 'target_spacing[1]' is 0 but must be >= 0.0001"),
    (("target_spacing", 1), 1e-300, "field 'target_spacing[1]' is 1e-300 but must be >= 0.0001"),
    (("target_spacing", 0), 1e308, "field 'target_spacing[0]' is 1e+308 but must be <= 10000"),
    (("orientation",), "XYZ", "field 'orientation'"),
    (("normalization", "kind"), "minmax", "field 'normalization.kind' is \"minmax\" but must be one of"),
    (("normalization",), {"kind": "ct_window"}, "field 'normalization.window' is required"),
    (("normalization", "window"), [-1e308, 1e308], "field 'normalization.window' is [-1e+308, 1e+308] but must"),
    (("normalization", "window"), [0, 1e-300], "must lie within ±1e+30 with its ends at least 1e-30 apart"),
    (("patch_size",), [64, 64], "field 'patch_size' must have exactly 3 items"),
    (("roi", "extension"), "scale3", "field 'roi.extension'"),
    (("roi", "padding_mm"), -1, "field 'roi.padding_mm' is -1 but must be >= 0"),
    (("postprocessing", "fill_holes"), 1, "field 'postprocessing.fill_holes' must be of type boolean"),
    (("provenance", "iterations"), "5", "field 'provenance.iterations' must be of type integer"),
    (("provenance", "annotated_slices"), {"0": [-1]}, "field 'provenance.annotated_slices.0[0]' is -1"),
    (("provenance", "trained_on", 0, "sha256"), "xyz", "field 'provenance.trained_on[0].sha256'"),
    (("provenance", "validation", "dice"), "high", "field 'provenance.validation.dice'"),
    (("provenance", "validation", "dice"), math.nan, "field 'provenance.validation.dice' must be a finite number"),
    (("format_version",), 2, "field 'format_version' is 2 but must be <= 1"),
    (("colour",), [1, 0, 0], "field 'colour' is not a card field"),
]


@pytest.mark.parametrize(
    "path, value, expected",
    BAD_CARDS,
    ids=[".".join(map(str, p)) + "-" + str(i) for i, (p, _, _) in enumerate(BAD_CARDS)],
)
def test_bad_card_names_the_field(path, value, expected):
    data = json.loads(json.dumps(full_card().to_dict()))
    _set(data, path, value)
    with pytest.raises(SegNetsError) as caught:
        validate_card(data)
    message = str(caught.value)
    assert message.startswith("card.json: ") and message.endswith(".") and "\n" not in message
    assert expected in message


def test_make_card_defaults():
    card = make_card("vnet", {1: "prostate"}, in_channels=1, modality="MR")
    assert (card.id, card.version, card.num_classes) == ("vnet-prostate", "1.0.0", 2)
    assert card.build_args == {"preset": "default"}
    assert card.normalization.kind == "zscore" and card.normalization.nonzero_only
    assert card.provenance.created.endswith("+00:00") and card.provenance.segnets_version
    ct = make_card("unet3d", ["liver", "spleen"], in_channels=2)
    assert [c.name for c in ct.in_channels] == ["CT 1", "CT 2"]
    assert ct.normalization.kind == "ct_window" and ct.normalization.window[0] < ct.normalization.window[1]
    assert [label.value for label in ct.labels] == [1, 2] and ct.labels[0].color != ct.labels[1].color
    with pytest.raises(SegNetsError, match="architecture"):
        make_card("unet2d", ["liver"])
    # RoI localization as each paper does it: a 3D RU-Net by its Global Image Encoder, the others by a coarse pass
    assert make_card("runet", ["tumor"]).roi.locator == "runet" and card.roi.locator == "self"


def test_semantic_version_order():
    ordered = ["0.9.0", "1.0.0-alpha", "1.0.0-alpha.2", "1.0.0-beta", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0"]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert latest(["1.2.0", "1.10.0", "1.9.9"]) == "1.10.0"
    assert (bump("1.2.3", "major"), bump("1.2.3"), bump("1.2.3", "patch")) == ("2.0.0", "1.3.0", "1.2.4")
    with pytest.raises(SegNetsError, match="semantic version"):
        version_key("1.0")


def test_derive_card_names_its_base_and_never_reuses_the_version():
    base = full_card()
    volume = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), spacing=(1.0, 1.0, 2.5))
    record = volume_record(volume, "patient 7", annotated_slices={0: [1, 0]}, labeled_voxels=24)
    assert record["shape"] == [2, 3, 4] and record["annotated_slices"] == {"0": [0, 1]}
    assert len(record["sha256"]) == 64
    assert volume_record(volume.with_array(volume.array + 1))["sha256"] != record["sha256"]

    version = next_version(None, base)
    derived = derive_card(
        base,
        version=version,
        trained_on=[record],
        annotated_slices={0: [0, 1]},
        iterations=50,
        seconds=3.0,
        validation={"dice": 0.8, "dice/tumor": math.nan},
    )
    assert (derived.id, derived.version) == (base.id, "1.1.0")
    assert (derived.provenance.base_model_id, derived.provenance.base_model_version) == (base.id, base.version)
    assert derived.provenance.validation == {"dice": 0.8, "dice/tumor": None}
    assert derived.provenance.annotated_slices == {"0": [0, 1]}
    assert derived.labels == base.labels and derived.build_args == base.build_args
    assert base.provenance.iterations == 200  # the base card is untouched
    validate_card(derived.to_dict())
    with pytest.raises(SegNetsError, match="must be higher than the base"):
        derive_card(base, version=base.version)
