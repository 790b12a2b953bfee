"""Model folders and zips: bit-exact round trips, damaged or mismatched files, atomic saves."""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
from fuzz_helpers import full_disk, one_sentence
from model_helpers import outputs, snapshot, tiny_model

from SegNetsLib.card.factory import derive_card
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models import store
from SegNetsLib.models.library import ModelLibrary, load
from SegNetsLib.models.store import save


def edit_card(folder: Path, change) -> None:
    card = json.loads((folder / "card.json").read_text())
    change(card)
    (folder / "card.json").write_text(json.dumps(card))


def test_save_then_load_gives_identical_outputs(tmp_path):
    net, card = tiny_model()
    folder = save(net, card, tmp_path / "liver")
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "weights.safetensors"]
    other, loaded_card = load(folder)
    assert loaded_card == card
    assert not other.training
    assert torch.equal(outputs(other), outputs(net))
    assert not torch.equal(outputs(tiny_model(seed=5)[0]), outputs(net))  # the check can fail
    for name, tensor in net.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor), name


def test_save_never_overwrites_and_checks_the_card_fits_the_net(tmp_path):
    net, card = tiny_model()
    save(net, card, tmp_path / "m")
    before = snapshot(tmp_path)
    with pytest.raises(SegNetsError, match="already exists"):
        save(net, card, tmp_path / "m")
    _, three_labels = tiny_model(labels=("a", "b", "c"))
    with pytest.raises(SegNetsError, match=r"the network to save has tensor '.*' of shape .* where .* is expected"):
        save(net, three_labels, tmp_path / "other")
    assert snapshot(tmp_path) == before


def test_zip_export_imported_into_another_library_gives_identical_outputs(tmp_path):
    net, card = tiny_model()
    first, second = ModelLibrary(tmp_path / "a"), ModelLibrary(tmp_path / "b")
    first.add(net, card)
    archive = first.export(card.id, tmp_path / "shared" / "liver.zip")
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["card.json", "weights.safetensors"]
    entry = second.import_path(archive)
    assert (entry.id, entry.version) == (card.id, card.version)
    loaded, loaded_card = second.load(card.id)
    assert loaded_card == card
    assert torch.equal(outputs(loaded), outputs(net))
    direct, _ = load(archive)  # a zip also loads without importing
    assert torch.equal(outputs(direct), outputs(net))
    with pytest.raises(SegNetsError, match="already exists"):
        first.export(card.id, archive)


def test_load_by_id_and_version_from_the_default_library(model_library):
    net, card = tiny_model()
    newer_net, _ = tiny_model(seed=3)
    library = ModelLibrary()
    assert library.root == model_library
    library.add(net, card)
    library.add(newer_net, derive_card(card, version="1.10.0"))
    library.add(tiny_model(seed=4)[0], derive_card(card, version="1.9.0"))
    assert library.versions(card.id) == ["1.0.0", "1.9.0", "1.10.0"]
    assert torch.equal(outputs(load(card.id)[0]), outputs(newer_net))  # latest by semantic version
    assert torch.equal(outputs(load(f"{card.id}@1.0.0")[0]), outputs(net))
    with pytest.raises(SegNetsError, match="has no version 3.0.0"):
        load(f"{card.id}@3.0.0")
    with pytest.raises(SegNetsError, match="is not in the library"):
        load("spleen")


def test_truncated_weights_are_reported_and_not_imported(tmp_path):
    net, card = tiny_model()
    folder = save(net, card, tmp_path / "m")
    weights = folder / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(SegNetsError, match="weights.safetensors: not a complete safetensors file, it may be truncated"):
        load(folder)
    library = ModelLibrary(tmp_path / "lib")
    library.add(*tiny_model(seed=2, id="kept"))
    before = snapshot(library.root)
    with pytest.raises(SegNetsError, match="truncated"):
        library.import_path(folder)
    assert snapshot(library.root) == before


def test_shape_mismatch_names_the_first_tensor(tmp_path):
    net, card = tiny_model()
    folder = save(net, card, tmp_path / "m")
    edit_card(folder, lambda c: c["build_args"].update(base_channels=3))
    first = next(iter(net.state_dict()))
    saved = tuple(net.state_dict()[first].shape)
    with pytest.raises(SegNetsError) as caught:
        load(folder)
    message = str(caught.value)
    assert f"has tensor '{first}' of shape {saved} where" in message
    assert "unet3d (preset 'default', 1 input channel, 3 classes, base_channels=3, levels=2)" in message
    edit_card(folder, lambda c: c["build_args"].update(base_channels=2, levels=3))
    with pytest.raises(SegNetsError, match=r"has no tensor '.*'"):
        load(folder)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda c: c.pop("labels"), "card.json: field 'labels' is required but missing."),
        (lambda c: c.update(in_channels="CT"), "card.json: field 'in_channels' must be of type array"),
        (lambda c: c.update(architecture="unet2d"), "card.json: field 'architecture' is \"unet2d\" but must be one of"),
        (lambda c: c["build_args"].update(depth=3), "card.json: field 'build_args' does not fit unet3d"),
        (
            lambda c: c["roi"].update(coarse_factor=0.01),
            "card.json: field 'roi.coarse_factor' is 0.01 but must be >= 1",
        ),
        (
            lambda c: c.update(normalization={"kind": "ct_window", "window": [100, 100], "nonzero_only": False}),
            "card.json: field 'normalization.window' is [100, 100] but must be [low, high] with low < high.",
        ),
    ],
    ids=[
        "missing-field",
        "wrong-type",
        "unknown-architecture",
        "unknown-build-arg",
        "upsampling-coarse-pass",
        "window",
    ],
)
def test_bad_card_in_a_model_is_refused_and_library_unchanged(tmp_path, change, expected):
    net, card = tiny_model()
    folder = save(net, card, tmp_path / "m")
    edit_card(folder, change)
    library = ModelLibrary(tmp_path / "lib")
    library.add(*tiny_model(seed=2, id="kept"))
    before = snapshot(library.root)
    with pytest.raises(SegNetsError) as caught:
        library.import_path(folder)
    assert expected in str(caught.value)
    assert snapshot(library.root) == before


def test_duplicate_id_and_version_is_refused(tmp_path):
    library = ModelLibrary(tmp_path / "lib")
    net, card = tiny_model()
    library.add(net, card)
    before = snapshot(library.root)
    other_net, _ = tiny_model(seed=9)
    with pytest.raises(SegNetsError, match=f"model '{card.id}' version 1.0.0 is already in the library"):
        library.add(other_net, card)
    archive = library.export(card.id, tmp_path / "copy.zip")
    with pytest.raises(SegNetsError, match="already in the library"):
        library.import_path(archive)
    assert snapshot(library.root) == before
    entry = library.import_path(archive, version="1.0.1")  # an explicit new version is fine
    assert library.versions(card.id) == ["1.0.0", "1.0.1"] and entry.card.version == "1.0.1"


def test_killed_save_leaves_no_model_and_no_partial_folder(tmp_path, monkeypatch):
    library = ModelLibrary(tmp_path / "lib")
    net, card = tiny_model()

    def dies_half_way(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 1000)  # part of the file is on disk when the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        library.add(net, card)
    assert library.list() == []
    assert list(library.root.iterdir()) == []  # no partial folder, no empty id folder
    monkeypatch.undo()
    library.add(net, card)  # the same model saves fine afterwards
    assert [e.version for e in library.list()] == ["1.0.0"]


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _model_bytes(tmp_path: Path) -> dict[str, bytes]:
    folder = save(*tiny_model(), tmp_path / "src")
    return {name: (folder / name).read_bytes() for name in ("card.json", "weights.safetensors")}


@pytest.mark.parametrize("evil", ["../escaped.txt", "/tmp/segnets_escaped.txt", "a/../../escaped.txt"])
def test_zip_with_path_traversal_is_refused(tmp_path, evil):
    files = _model_bytes(tmp_path)
    archive = _zip(tmp_path / "evil.zip", {**files, evil: b"owned"})
    library = ModelLibrary(tmp_path / "work" / "lib")
    with pytest.raises(SegNetsError, match="points outside the archive; the zip is refused"):
        library.import_path(archive)
    assert not library.root.exists() or list(library.root.iterdir()) == []
    assert not list(tmp_path.rglob("escaped.txt")) and not Path("/tmp/segnets_escaped.txt").exists()


def test_zip_bomb_is_refused(tmp_path, monkeypatch):
    files = _model_bytes(tmp_path)
    library = ModelLibrary(tmp_path / "lib")
    # a card.json of 5 MiB (compressing to a few kB) exceeds the card size cap
    bomb = _zip(
        tmp_path / "card_bomb.zip", {"card.json": b" " * (5 << 20), "weights.safetensors": files["weights.safetensors"]}
    )
    assert bomb.stat().st_size < 100_000
    with pytest.raises(SegNetsError, match="more than"):
        library.import_path(bomb)
    # weights beyond the total cap (lowered here so the test stays small)
    monkeypatch.setattr(store, "MAX_UNZIPPED_BYTES", 1 << 20)
    big = _zip(tmp_path / "big.zip", {"card.json": files["card.json"], "weights.safetensors": bytes(4 << 20)})
    with pytest.raises(SegNetsError, match=r"would unpack to 4,19\d,\d{3} bytes, more than the 1,048,576-byte limit"):
        library.import_path(big)
    assert not library.root.exists() or list(library.root.iterdir()) == []


def test_zip_without_weights_or_not_a_zip(tmp_path):
    files = _model_bytes(tmp_path)
    library = ModelLibrary(tmp_path / "lib")
    with pytest.raises(SegNetsError, match="has no weights.safetensors"):
        library.import_path(_zip(tmp_path / "half.zip", {"card.json": files["card.json"]}))
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    with pytest.raises(SegNetsError, match="fake.zip: not a readable zip archive"):
        library.import_path(tmp_path / "fake.zip")
    # a zip of a model folder (one folder level) imports fine
    nested = _zip(tmp_path / "nested.zip", {f"liver/{name}": data for name, data in files.items()})
    assert library.import_path(nested).version == "1.0.0"


def test_a_damaged_or_wrong_zip_is_refused_naming_the_zip(tmp_path):
    files = _model_bytes(tmp_path)
    library = ModelLibrary(tmp_path / "lib")
    good = _zip(tmp_path / "good.zip", files)
    data = bytearray(good.read_bytes())
    start = data.find(b"card.json") + len("card.json")
    for index in range(start + 5, start + 40):
        data[index] ^= 0xFF  # inside card.json's deflate stream
    (tmp_path / "corrupt.zip").write_bytes(bytes(data))
    with pytest.raises(SegNetsError, match="corrupt.zip: entry card.json cannot be read"):
        library.import_path(tmp_path / "corrupt.zip")
    broken = _zip(tmp_path / "badjson.zip", {**files, "card.json": b"{not json"})
    with pytest.raises(SegNetsError) as caught:
        library.import_path(broken)
    assert str(caught.value).startswith("badjson.zip: card.json: not valid JSON") and "segnets-model-" not in str(
        caught.value
    )


def test_a_zip_unpacked_onto_a_full_temporary_disk_is_one_sentence_and_the_library_unchanged(tmp_path, monkeypatch):
    """The weights are unpacked into a temporary folder first: a full disk there raised a bare OSError (a traceback
    from 'segnets models import' and 'segnets segment --model x.zip')."""
    files = _model_bytes(tmp_path)
    archive = _zip(tmp_path / "model.zip", files)
    library = ModelLibrary(tmp_path / "lib")
    library.import_path(tmp_path / "src")
    before = snapshot(library.root)
    scratch = tmp_path / "scratch"
    with full_disk(scratch, size_kib=64):
        (scratch / "filler").write_bytes(bytes(60 * 1024))  # the card fits in what is left, the weights do not
        monkeypatch.setattr(tempfile, "tempdir", str(scratch))
        for attempt in (lambda: library.import_path(archive, version="2.0.0"), lambda: load(archive)):
            with pytest.raises(SegNetsError) as caught:
                attempt()
            message = one_sentence(caught.value)
            assert message.startswith("model.zip: weights.safetensors could not be unpacked into the temporary")
            assert str(scratch) in message and "No space left on device" in message
        assert sorted(p.name for p in scratch.iterdir()) == ["filler"]  # no scratch folder left behind
    assert snapshot(library.root) == before
