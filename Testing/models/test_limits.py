"""Cards asking for huge networks are refused before any memory is spent (meta-device build, header shapes)."""

from __future__ import annotations

import json
import zipfile

import pytest
from fuzz_helpers import one_sentence, run_limited, sparse_safetensors
from model_helpers import tiny_model
from robustness_cases import expect

from SegNetsLib.card.schema import card_to_json
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models.library import ModelLibrary, load
from SegNetsLib.models.limits import MAX_NETWORK_BYTES, check_network_size, network_bytes
from SegNetsLib.models.store import meta_network, save
from SegNetsLib.models.weights import shapes_of


def _model_with_build_args(tmp_path, build_args, name="model"):
    """A saved tiny model whose card is then edited to ask for ``build_args`` (the weights stay tiny)."""
    net, card = tiny_model()
    folder = save(net, card, tmp_path / name)
    data = json.loads((folder / "card.json").read_text())
    data["build_args"] = build_args
    (folder / "card.json").write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize("base_channels", [100000, 1500])
def test_card_asking_for_a_huge_network_is_refused_before_building(tmp_path, base_channels):
    folder = _model_with_build_args(tmp_path, {"base_channels": base_channels, "levels": 2})
    # a child under a 1 GiB address-space limit: building the network for real would die there
    result = run_limited(
        f"""
        from SegNetsLib.models.library import load
        from SegNetsLib.core.errors import SegNetsError
        try:
            load({str(folder)!r})
        except SegNetsError as error:
            print("REFUSED", error)
        """,
        memory_bytes=1024**3,
    )
    assert result.returncode == 0 and result.stdout.startswith("REFUSED"), result.stderr[-2000:]
    expect("huge-network", result.stdout)
    library = ModelLibrary(tmp_path / "library")
    with pytest.raises(SegNetsError) as refused:
        library.import_path(folder)
    one_sentence(refused.value)
    assert library.list() == []


def test_weights_header_is_compared_with_the_meta_network_before_loading(tmp_path):
    net, card = tiny_model()
    folder = save(net, card, tmp_path / "model")
    shapes = shapes_of(net.state_dict())
    name = next(iter(shapes))
    shapes[name] = (200000, *shapes[name][1:])  # one tensor declared 100 000 times larger, data a sparse hole
    sparse_safetensors(folder / "weights.safetensors", shapes)
    with pytest.raises(SegNetsError, match=f"tensor '{name}' of shape \\(200000") as refused:
        load(folder)
    expect("header-mismatch", one_sentence(refused.value))


def test_meta_network_takes_no_memory_and_counts_every_tensor():
    net, card = tiny_model()
    shape_only = meta_network(card)
    assert all(t.device.type == "meta" for t in shape_only.state_dict().values())
    assert network_bytes(shape_only) == network_bytes(net) > 0
    assert shapes_of(shape_only.state_dict()) == shapes_of(net.state_dict())


def test_network_larger_than_available_memory_is_refused_up_front(tmp_path):
    """A sound model (header matches the card) of 100-200 MB, loaded with less memory left than it needs."""
    net, card = tiny_model()
    card.build_args = {"base_channels": 64, "levels": 4}
    shape_only = meta_network(card)
    size = network_bytes(shape_only)
    assert 50 * 1024**2 < size < MAX_NETWORK_BYTES
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "card.json").write_text(card_to_json(card))
    sparse_safetensors(folder / "weights.safetensors", shapes_of(shape_only.state_dict()))
    with pytest.raises(SegNetsError, match="of memory but only 64.0 MiB is available") as refused:
        check_network_size(shape_only, "weights.safetensors", "unet3d", available=64 * 1024**2)
    one_sentence(refused.value)
    # the same through load() in a child whose address space leaves room for one copy of the weights only
    result = run_limited(
        f"""
        from SegNetsLib.models.library import load
        from SegNetsLib.core.errors import SegNetsError
        try:
            load({str(folder)!r})
            print("LOADED")
        except SegNetsError as error:
            print("REFUSED", error)
        """,
        memory_bytes=int(size * 1.5),
    )
    assert result.stdout.startswith("REFUSED"), result.stdout + result.stderr[-2000:]
    expect("no-memory", result.stdout)


@pytest.mark.parametrize(
    "build_args",
    [{"base_channels": -3}, {"base_channels": 0}, {"levels": 400}, {"base_channels": 2.5}, {"nonsense": 1}],
)
def test_build_args_a_constructor_chokes_on_are_one_sentence(tmp_path, build_args):
    folder = _model_with_build_args(tmp_path, build_args)
    with pytest.raises(SegNetsError) as refused:
        load(folder)
    expect("bad-build-args", one_sentence(refused.value))


def test_card_asking_for_a_v_net_of_a_million_convolutions_is_refused_at_once(tmp_path):
    """Tiny tensors, many modules: 10**6 convolutions of one channel are 0.5 GB of weights (under the bound) but
    took minutes and gigabytes of Python objects to build on the meta device before any check."""
    folder = _model_with_build_args(
        tmp_path, {"preset": "default", "base_channels": 1, "encoder_depths": [10**6, 1], "decoder_depths": [1]}
    )
    data = json.loads((folder / "card.json").read_text())
    (folder / "card.json").write_text(json.dumps({**data, "architecture": "vnet"}))
    result = run_limited(
        f"""
        from SegNetsLib.models.library import load
        from SegNetsLib.core.errors import SegNetsError
        try:
            load({str(folder)!r})
        except SegNetsError as error:
            print(error)
        """,
        timeout=30,
    )
    assert "must lie between 1 and 16" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("build_args", [{"base_channels": 100000, "levels": 2}, {"in_channels": 10**9}])
def test_a_refused_network_names_the_model_it_came_from(tmp_path, build_args):
    """The refusal said "card.json: ..." whichever model, zip or library id it was about."""
    folder = _model_with_build_args(tmp_path, build_args)
    archive = tmp_path / "liver.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in folder.iterdir():
            zipped.write(path, path.name)
    for model, named in ((folder, f"{folder / 'card.json'}: "), (archive, "liver.zip: card.json: ")):
        with pytest.raises(SegNetsError) as refused:
            load(model)
        assert one_sentence(refused.value).startswith(named), refused.value
