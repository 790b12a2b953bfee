"""Fuzzing the model readers: card.json (fields and text), safetensors headers, model zips."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import pytest
import safetensors.torch
import torch
from fuzz_helpers import keeps_the_promise
from fuzzing import LENGTHS, fuzz, mutated_json
from hypothesis import strategies as st
from model_helpers import tiny_model
from robustness_cases import expect

from SegNetsLib.card.schema import card_from_json, card_to_json
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models.library import ModelLibrary, load
from SegNetsLib.models.store import extract_model_zip, save


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A valid tiny model: card.json text and weights.safetensors bytes."""
    net, card = tiny_model()
    folder = save(net, card, tmp_path_factory.mktemp("fuzz-model") / "model")
    return (folder / "card.json").read_text(), (folder / "weights.safetensors").read_bytes()


def _write_model(folder, card_text, weights: bytes):
    model = folder / "model"
    model.mkdir()
    (model / "card.json").write_text(card_text, encoding="utf-8", errors="surrogatepass")
    (model / "weights.safetensors").write_bytes(weights)
    return model


@pytest.mark.parametrize("long", LENGTHS)
def test_mutated_card_fields(model, workspace, long):
    """Every field of card.json replaced, deleted, lengthened; unknown keys; huge numbers; unicode."""
    card_text, weights = model

    def attempt(data, folder):
        text = json.dumps(data, allow_nan=True, ensure_ascii=False)
        path = _write_model(folder, text, weights)
        return lambda: (load(path), ModelLibrary(folder / "library").import_path(path))

    fuzz("fuzz-card", long, mutated_json(json.loads(card_text)), attempt, workspace)


@pytest.mark.parametrize("long", LENGTHS)
def test_mutated_card_text(model, workspace, long):
    """card.json as bytes: cut, spliced with random bytes, invalid UTF-8."""
    card_text, _ = model
    raw = card_text.encode()
    strategy = st.tuples(st.integers(0, len(raw)), st.integers(0, 40), st.binary(max_size=24))

    def attempt(value, folder):
        at, drop, insert = value
        return lambda: card_from_json(raw[:at] + insert + raw[at + drop :], "card.json")

    fuzz("fuzz-card-text", long, strategy, attempt, workspace)


def _header(weights: bytes) -> dict:
    length = struct.unpack("<Q", weights[:8])[0]
    return json.loads(weights[8 : 8 + length])


def _with_header(weights: bytes, header: dict, length: int | None = None) -> bytes:
    old = struct.unpack("<Q", weights[:8])[0]
    raw = json.dumps(header, allow_nan=True).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + weights[8 + old :]


@pytest.mark.parametrize("long", LENGTHS)
def test_mutated_safetensors_headers(model, workspace, long):
    """Header entries with other dtypes, shapes, offsets (huge, negative, overlapping), a lying header
    length, a truncated file."""
    card_text, weights = model
    header = _header(weights)
    strategy = st.tuples(
        mutated_json(header, max_mutations=2),
        st.one_of(st.none(), st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 7, 2**63])),
        st.one_of(st.none(), st.integers(0, len(weights))),
    )

    def attempt(value, folder):
        changed, length, cut = value
        data = _with_header(weights, changed, length)
        path = _write_model(folder, card_text, data[:cut] if cut is not None else data)
        return lambda: load(path)

    fuzz("fuzz-safetensors", long, strategy, attempt, workspace)


ZIP_NAMES = st.one_of(
    st.sampled_from(
        [
            "card.json",
            "weights.safetensors",
            "model/card.json",
            "model/weights.safetensors",
            "../card.json",
            "/weights.safetensors",
            "a/b/card.json",
            "C:/card.json",
            "..\\weights.safetensors",
            "card.json/",
            "é/card.json",
        ]
    ),
    st.text(max_size=20),
)


@st.composite
def zip_archives(draw, card: bytes, weights: bytes):
    """A zip of 0-4 entries: the card, the weights, random bytes or zeros (up to 24 MB, deflated: a small
    bomb), with names from ``ZIP_NAMES``; optionally the declared sizes are lies."""
    contents = st.sampled_from(["card", "weights", "random", "zeros"])
    entries = draw(st.lists(st.tuples(ZIP_NAMES, contents, st.booleans()), max_size=4))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, kind, deflate in entries:
            data = {
                "card": card,
                "weights": weights,
                "random": draw(st.binary(max_size=64)),
                "zeros": b"\0" * draw(st.sampled_from([0, 1000, 24 * 1024**2])),
            }[kind]
            method = zipfile.ZIP_DEFLATED if deflate or kind == "zeros" else zipfile.ZIP_STORED
            try:
                archive.writestr(zipfile.ZipInfo(name or "x"), data, compress_type=method)
            except ValueError:
                continue
    raw = bytearray(buffer.getvalue())
    if draw(st.booleans()):  # lie about sizes: patch the central directory's uncompressed sizes
        at = raw.find(b"PK\x01\x02")
        while at != -1:
            raw[at + 24 : at + 28] = struct.pack("<I", draw(st.sampled_from([0, 1, 100, 2**32 - 1])))
            at = raw.find(b"PK\x01\x02", at + 4)
    if draw(st.booleans()) and raw:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(raw)


@pytest.mark.parametrize("long", LENGTHS)
def test_mutated_model_zips(model, workspace, long):
    """Paths outside the archive, odd names, several models, lying sizes, truncation, compression bombs."""
    card_text, weights = model

    def attempt(raw, folder):
        path = folder / "model.zip"
        path.write_bytes(raw)
        out = folder / "out"
        out.mkdir()

        def call():
            try:
                extract_model_zip(path, out, max_bytes=16 * 1024**2)
            finally:
                extra = [p.name for p in out.iterdir() if p.name not in ("card.json", "weights.safetensors")]
                assert not extra, f"unpacked beyond the two model files: {extra}"
            load(path)

        return call

    fuzz("fuzz-zip", long, zip_archives(card_text.encode(), weights), attempt, workspace)


def test_an_unmutated_model_loads(model, tmp_path):
    """The base the mutations start from is valid (so refusals come from the mutations)."""
    card_text, weights = model
    assert card_to_json(card_from_json(card_text)) == card_text
    path = tmp_path / "m"
    path.mkdir()
    (path / "card.json").write_text(card_text)
    (path / "weights.safetensors").write_bytes(weights)
    load(path)


def test_card_field_names_with_control_characters_stay_one_sentence(model, tmp_path):
    """Found by the long run: an unknown key "\\n" made the refusal two lines."""
    card_text, weights = model
    data = json.loads(card_text)
    data["labels"][0]["\n"] = None
    path = _write_model(tmp_path, json.dumps(data), weights)
    expect("card-control-character", keeps_the_promise(lambda: load(path)))


def test_build_args_keys_with_control_characters_stay_one_sentence(model, tmp_path):
    """Found by the long run: a build_args key "\\n" made the refusal two lines (Python's TypeError quotes it)."""
    card_text, weights = model
    data = json.loads(card_text)
    data["build_args"]["\n"] = 3
    path = _write_model(tmp_path, json.dumps(data), weights)
    expect("build-args-line-break", keeps_the_promise(lambda: load(path)))


def test_tensor_names_and_shapes_from_the_weights_are_quoted_on_one_short_line(model, tmp_path):
    """A tensor named with a line break and an escape code printed a forged second line; a shape of 200 000
    dimensions made a 600 kB message. Both are the file's, not the network's: quoted escaped and cut."""
    card_text, weights = model
    header = _header(weights)
    forged = "evil\nsegnets models: Imported\x1b[31m"
    header[forged] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    (tmp_path / "odd-name").mkdir()
    path = _write_model(tmp_path / "odd-name", card_text, _with_header(weights, header))
    message = keeps_the_promise(lambda: load(path))
    assert "'evil\\nsegnets models: Imported\\x1b[31m' (shape (0,)) that the network does not have" in message
    header = _header(weights)
    name = next(key for key in header if key != "__metadata__")
    header[name]["shape"] = header[name]["shape"] + [1] * 200_000
    (tmp_path / "long-shape").mkdir()
    path = _write_model(tmp_path / "long-shape", card_text, _with_header(weights, header))
    message = keeps_the_promise(lambda: load(path))
    assert f"'{name}' of shape (" in message and "… 200001 dimensions) where" in message, message


def test_zip_entry_without_a_name_is_refused_in_one_sentence(model, tmp_path):
    """Found by the long run: an entry whose name is empty made zipfile's is_dir raise IndexError."""
    card_text, weights = model
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("card.json", card_text)
        archive.writestr("weights.safetensors", weights)
        archive.writestr(zipfile.ZipInfo("\x00"), b"")  # zipfile cuts a name at its NUL: an empty name
    expect("zip-empty-name", keeps_the_promise(lambda: load(path)))
    (tmp_path / "out").mkdir()
    extract_model_zip(path, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["card.json", "weights.safetensors"]


@pytest.mark.parametrize("depth", [40, 600, 100_000])
def test_deeply_nested_card_is_refused_in_one_sentence(model, tmp_path, depth):
    """JSON nested thousands of levels made json.loads raise RecursionError; a few hundred levels in an extra
    key of a training record loaded, and then could not be imported (dataclasses.asdict recursed too deep)."""
    card_text, weights = model
    data = json.loads(card_text)
    data.pop("provenance")
    nested = "[" * depth + "]" * depth
    text = json.dumps(data)[:-1] + f', "provenance": {{"trained_on": [{{"extra": {nested}}}]}}}}'
    path = _write_model(tmp_path, text, weights)
    for call in (lambda: load(path), lambda: ModelLibrary(tmp_path / "library").import_path(path)):
        expect("card-deep", keeps_the_promise(call))


def _damaged_entry_zip(path, card_text: str, weights: bytes, method: int) -> None:
    """A model zip whose weights entry (compressed with ``method``) has 16 bytes of its data overwritten."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("card.json", card_text)
        archive.writestr("weights.safetensors", weights, compress_type=method)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"weights.safetensors") + len("weights.safetensors") + 60
    raw[at : at + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))


def _encrypted_zip(path, card_text: str, weights: bytes) -> None:
    """A model zip whose entries are flagged as encrypted (general purpose bit 0)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("card.json", card_text)
        archive.writestr("weights.safetensors", weights)
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(signature)
        while at != -1:
            raw[at + offset] |= 1
            at = raw.find(signature, at + 4)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("kind", ["bzip2", "lzma", "encrypted"])
def test_damaged_or_encrypted_zip_entries_are_refused_in_one_sentence(model, tmp_path, kind):
    """bzip2 and lzma data that does not decompress raised OSError and LZMAError, an encrypted entry RuntimeError."""
    card_text, weights = model
    path = tmp_path / "model.zip"
    if kind == "encrypted":
        _encrypted_zip(path, card_text, weights)
    else:
        _damaged_entry_zip(path, card_text, weights, {"bzip2": zipfile.ZIP_BZIP2, "lzma": zipfile.ZIP_LZMA}[kind])
    message = keeps_the_promise(lambda: load(path))
    assert ("is encrypted" if kind == "encrypted" else "cannot be read") in message
    expect("zip-entry-damaged", message)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda t: torch.full_like(t, float("nan")) if t.is_floating_point() else t, "holds NaN or infinite values"),
        (lambda t: torch.full_like(t, float("inf")) if t.is_floating_point() else t, "holds NaN or infinite values"),
        (lambda t: t.to(torch.uint8), "holds uint8 values where the network holds float32"),
        (lambda t: t.to(torch.bool), "holds bool values where the network holds float32"),
    ],
)
def test_weights_with_non_finite_or_non_float_values_are_refused(model, tmp_path, change, expected):
    """Right names and shapes, wrong values: NaN, infinity, integers or booleans were loaded (and imported) as they
    were, and the network then predicted NaN everywhere or nonsense."""
    card_text, weights = model
    path = tmp_path / "weights.safetensors"
    path.write_bytes(weights)
    tensors = {name: change(tensor).contiguous() for name, tensor in safetensors.torch.load_file(path).items()}
    model_path = _write_model(tmp_path, card_text, safetensors.torch.save(tensors))
    for call in (lambda: load(model_path), lambda: ModelLibrary(tmp_path / "library").import_path(model_path)):
        message = keeps_the_promise(call)
        assert expected in message
        expect("weights-values", message)
    assert not (tmp_path / "library").exists()


@pytest.mark.parametrize("length", [0, 1, 2**63, 2**64 - 1])
def test_a_lying_header_length_is_called_so(model, tmp_path, length):
    """The 'header length is wrong' refusal is a ValueError, and was caught and reworded 'the header is not JSON'."""
    card_text, weights = model
    path = _write_model(tmp_path, card_text, struct.pack("<Q", length) + weights[8:])
    assert "the header length is wrong" in keeps_the_promise(lambda: load(path))


def test_card_and_weights_from_different_folders_of_a_zip_are_refused(model, tmp_path):
    """a/card.json and b/weights.safetensors (halves of two models) were loaded as one model."""
    card_text, weights = model
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/card.json", card_text)
        archive.writestr("b/weights.safetensors", weights)
    assert "in different folders" in keeps_the_promise(lambda: load(path))


def test_a_weights_entry_inflating_beyond_its_cards_network_is_refused_early(model, tmp_path):
    """1 MiB of zip inflating to 1 GiB of weights was written whole to the temporary folder (within the 4 GiB
    bound of any network) before the weights were read; now the card's network bounds what the entry may hold."""
    from SegNetsLib.models.store import weights_bound

    card_text, weights = model
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("card.json", card_text)
        with archive.open("weights.safetensors", "w", force_zip64=True) as entry:
            entry.write(weights)
            for _ in range(1024):  # 1 GiB of zeros after the real weights: about 1 MiB compressed
                entry.write(bytes(1024**2))
    assert path.stat().st_size < 8 * 1024**2
    bound = weights_bound(card_from_json(card_text.encode(), "card.json"))
    assert len(weights) <= bound < 64 * 1024**2
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SegNetsError) as refused:
        extract_model_zip(path, out)
    expect("zip-inflating", str(refused.value))
    assert not (out / "weights.safetensors").exists() or (out / "weights.safetensors").stat().st_size <= bound


def test_the_card_of_a_zip_is_read_alone_within_its_limit(model, tmp_path):
    """Reading a zipped model's card (to match its labels before a fine-tune) read the whole entry into memory
    whatever its size, and a damaged zip raised zipfile's own error."""
    from SegNetsLib.models.store import read_zip_card

    card_text, weights = model
    good, huge, broken = tmp_path / "good.zip", tmp_path / "huge.zip", tmp_path / "broken.zip"
    for path, card in ((good, card_text), (huge, card_text + " " * (5 * 1024**2))):
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("card.json", card)
            archive.writestr("weights.safetensors", weights)
    broken.write_bytes(good.read_bytes()[:100])
    assert read_zip_card(good).to_dict() == card_from_json(card_text).to_dict()
    with pytest.raises(SegNetsError, match="huge.zip: card.json would unpack to .* more than the"):
        read_zip_card(huge)
    with pytest.raises(SegNetsError, match="broken.zip: not a readable zip archive"):
        read_zip_card(broken)
