"""A model on disk: a folder with ``card.json`` and ``weights.safetensors``, or the same two files in a ``.zip``.

Zip archives are untrusted: entries pointing outside the archive are refused and unpacked sizes are capped.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from lzma import LZMAError
from pathlib import Path, PurePosixPath

import torch
from torch import nn

from SegNetsLib import nets
from SegNetsLib.card.card import ModelCard
from SegNetsLib.card.schema import CARD_FILE, MAX_CARD_BYTES, card_to_json, read_card
from SegNetsLib.core.atomic import atomic_file, atomic_folder
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models.limits import MAX_NETWORK_BYTES, check_network_size, network_bytes
from SegNetsLib.models.weights import (
    WEIGHTS_FILE,
    check_shapes,
    first_mismatch,
    load_checked,
    read_safetensors,
    safetensors_shapes,
    shapes_of,
    write_weights,
)
from SegNetsLib.runtime.devices import resolve_device

MODEL_FILES = (CARD_FILE, WEIGHTS_FILE)
MAX_UNZIPPED_BYTES = MAX_NETWORK_BYTES + MAX_CARD_BYTES + 64 * 1024**2  # no loadable model unpacks to more
WEIGHTS_HEADER_BYTES = 16 * 1024**2  # a safetensors header: some 100 bytes a tensor, for thousands of tensors
_COPY_CHUNK = 1024 * 1024
# what reading a damaged entry raises: zipfile's errors, the deflate, bzip2 (OSError) and lzma decompressors',
# NotImplementedError for an unknown compression method
_UNREADABLE_ENTRY = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    NotImplementedError,
    zlib.error,
    LZMAError,
    OSError,
)


def describe_network(card: ModelCard) -> str:
    """E.g. "unet3d (preset 'default', 1 input channel, 3 classes, base_channels=8)"."""
    args = dict(card.build_args)
    preset = args.pop("preset", "default")
    channels = len(card.in_channels)
    extra = "".join(f", {key}={value!r}" for key, value in sorted(args.items()))
    return (
        f"{card.architecture} (preset {preset!r}, {channels} input channel{'s' if channels != 1 else ''}, "
        f"{card.num_classes} classes{extra})"
    )


def build_network(card: ModelCard, meta: bool = False, source: str = CARD_FILE) -> nn.Module:
    """An untrained network as the card describes it (``nets.build`` with the card's build args).

    ``meta=True`` builds it on PyTorch's meta device: names, shapes and dtypes only, no memory, so an
    untrusted card can be checked (:func:`meta_network`) before anything is allocated. A real build
    checks the size first. ``source``: what errors call the card (its path, or the zip it came in).
    """
    if not meta:
        check_network_size(meta_network(card, source), source, describe_network(card))
    try:
        if meta:
            with torch.device("meta"):
                return nets.build(card.architecture, len(card.in_channels), card.num_classes, **card.build_args)
        return nets.build(card.architecture, len(card.in_channels), card.num_classes, **card.build_args)
    except SegNetsError as error:
        raise SegNetsError(
            f"{source}: field 'build_args' does not fit {card.architecture} ({str(error).rstrip('.')})."
        ) from None
    except Exception as error:  # noqa: BLE001 - a constructor fed untrusted arguments may fail in any way
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise SegNetsError(
            f"{source}: field 'build_args' does not make a {card.architecture} network ({reason.rstrip('.')})."
        ) from None


def meta_network(card: ModelCard, source: str = CARD_FILE) -> nn.Module:
    """The card's network on the meta device (shapes only), refused when larger than :mod:`.limits` allows;
    errors call the card ``source``."""
    net = build_network(card, meta=True, source=source)
    check_network_size(net, source, describe_network(card), available=None)
    return net


def save(net: nn.Module, card: ModelCard, folder: str | os.PathLike) -> Path:
    """Write ``card.json`` and ``weights.safetensors`` into the new folder ``folder`` (atomically).

    The card must describe ``net`` (same tensor names and shapes); an existing folder is never replaced.
    """
    folder = Path(folder)
    text = card_to_json(card)
    problem = first_mismatch(shapes_of(net.state_dict()), shapes_of(meta_network(card).state_dict()))
    if problem:
        raise SegNetsError(
            f"the network to save {problem} for {describe_network(card)}; the card does not describe it."
        )
    taken = SegNetsError(f"{folder}: already exists; a model is never overwritten, choose a new folder.")
    if folder.exists():
        raise taken
    try:
        with atomic_folder(folder) as partial:
            (partial / CARD_FILE).write_text(text, encoding="utf-8")
            write_weights(net, partial / WEIGHTS_FILE)
    except OSError as error:  # another save of the same folder was renamed into place first
        if isinstance(error, FileExistsError) or error.errno == errno.ENOTEMPTY:
            raise taken from None
        raise
    return folder


def load_folder(
    folder: str | os.PathLike, device: str | torch.device = "cpu", name: str | None = None
) -> tuple[nn.Module, ModelCard]:
    """(network in eval mode on ``device`` ("auto", "cpu", "cuda", "cuda:N"), card) from a model folder;
    every tensor name and shape is checked against the card's architecture before loading. ``name``: what errors
    call the model (a zip it was unpacked from), else its folder."""
    folder, target = Path(folder), resolve_device(device)
    card_source = str(folder / CARD_FILE) if name is None else f"{name}: {CARD_FILE}"
    card = read_card(folder / CARD_FILE, card_source)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise SegNetsError(f"{name or folder}: the model has no {WEIGHTS_FILE}.")
    source = f"{folder.name}/{WEIGHTS_FILE}" if name is None else f"{name}: {WEIGHTS_FILE}"
    network = describe_network(card)
    shape_only = meta_network(card, card_source)  # no memory spent until names, shapes and size are checked
    check_shapes(safetensors_shapes(weights), shape_only, source, network)
    check_network_size(shape_only, source, network)
    net = load_checked(build_network(card, source=card_source), read_safetensors(weights), source, network)
    return net.to(target).eval(), card


def load_zip(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """(network, card) from a model ``.zip``; errors name the zip, not the folder it was unpacked into."""
    with tempfile.TemporaryDirectory(prefix="segnets-model-") as scratch:
        folder = Path(scratch) / "model"
        folder.mkdir()
        extract_model_zip(path, folder)
        return load_folder(folder, device, Path(path).name)


def _zip_members(archive: zipfile.ZipFile, source: str) -> dict[str, zipfile.ZipInfo]:
    """The card and weights entries, at the top level or in one folder; unsafe entries are refused."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise SegNetsError(f"{source}: entry {name!r} points outside the archive; the zip is refused.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise SegNetsError(f"{source}: entry {name!r} is a symbolic link; the zip is refused.")
        if not name or not parts or info.is_dir() or parts[-1] not in MODEL_FILES or len(parts) > 2:
            continue
        if info.flag_bits & 0x1:
            raise SegNetsError(f"{source}: entry {name!r} is encrypted; SegNets reads model zips without a password.")
        if parts[-1] in members:
            raise SegNetsError(f"{source}: holds more than one {parts[-1]}; a model zip holds exactly one model.")
        members[parts[-1]] = info
    for required in MODEL_FILES:
        if required not in members:
            raise SegNetsError(f"{source}: has no {required}; a model zip holds card.json and weights.safetensors.")
    card, weights = (PurePosixPath(members[name].filename.replace("\\", "/")) for name in MODEL_FILES)
    if card.parent != weights.parent:
        raise SegNetsError(
            f"{source}: holds {str(card)!r} and {str(weights)!r} in different folders; a model zip holds them side by side."
        )
    return members


def _entry_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> Iterator[bytes]:
    """The unpacked bytes of one entry, in chunks; a damaged entry raises SegNetsError naming ``source``."""
    try:
        with archive.open(info) as entry:
            while chunk := entry.read(_COPY_CHUNK):
                yield chunk
    except _UNREADABLE_ENTRY as error:
        text = str(error).strip()
        reason = text.splitlines()[0][:160] if text else type(error).__name__
        raise SegNetsError(f"{source} cannot be read ({reason}).") from None


def extract_model_zip(path: str | os.PathLike, folder: Path, max_bytes: int | None = None) -> None:
    """Unpack card.json and weights.safetensors of a model zip into ``folder`` (nothing else).

    Refuses entries with absolute or '..' paths or links, and archives that would unpack to more than
    ``max_bytes`` (default MAX_UNZIPPED_BYTES), counting the bytes actually written. The card is unpacked and
    checked first: the weights may then unpack to no more than its network holds (:func:`weights_bound`).
    """
    path = Path(path)
    cap = MAX_UNZIPPED_BYTES if max_bytes is None else max_bytes
    with _open_zip(path) as archive:
        members = _zip_members(archive, path.name)
        declared = sum(info.file_size for info in members.values())
        if declared > cap:
            raise SegNetsError(f"{path.name}: would unpack to {declared:,} bytes, more than the {cap:,}-byte limit.")
        _unpack(archive, members[CARD_FILE], folder / CARD_FILE, min(cap, MAX_CARD_BYTES), path.name)
        card = read_card(folder / CARD_FILE, f"{path.name}: {CARD_FILE}")
        bound = weights_bound(card, f"{path.name}: {CARD_FILE}")
        _unpack(archive, members[WEIGHTS_FILE], folder / WEIGHTS_FILE, min(cap, bound), path.name)


def read_zip_card(path: str | os.PathLike) -> ModelCard:
    """The card of a model zip, unpacked alone (within the card's size limit) and checked; the weights unread."""
    path = Path(path)
    with _open_zip(path) as archive, tempfile.TemporaryDirectory(prefix="segnets-card-") as scratch:
        target = Path(scratch) / CARD_FILE
        _unpack(archive, _zip_members(archive, path.name)[CARD_FILE], target, MAX_CARD_BYTES, path.name)
        return read_card(target, f"{path.name}: {CARD_FILE}")


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise SegNetsError(f"{path.name}: not a readable zip archive ({error}).") from None


def weights_bound(card: ModelCard, source: str = CARD_FILE) -> int:
    """The most bytes a weights file of ``card``'s network can hold: every tensor as float64, and a header."""
    return 2 * network_bytes(meta_network(card, source)) + WEIGHTS_HEADER_BYTES


def _unpack(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int, source: str) -> None:
    """Write the entry ``info`` to ``target`` (in a temporary folder); refused beyond ``limit`` bytes (declared or
    written). A full disk or a file size limit there is a SegNetsError naming the zip and the temporary folder."""
    name = target.name
    if info.file_size > limit:
        raise SegNetsError(
            f"{source}: {name} would unpack to {info.file_size:,} bytes, more than the {limit:,}-byte limit."
        )
    written = 0
    try:
        with open(target, "wb") as handle:
            for chunk in _entry_chunks(archive, info, f"{source}: entry {name}"):
                written += len(chunk)
                if written > limit:
                    raise SegNetsError(f"{source}: {name} unpacks to more than {limit:,} bytes; the zip is refused.")
                handle.write(chunk)
    except OSError as error:
        raise SegNetsError(
            f"{source}: {name} could not be unpacked into the temporary folder {tempfile.gettempdir()} "
            f"({(error.strerror or str(error)).rstrip('.')}); free some space there or set TMPDIR to a folder "
            "with room."
        ) from None


def write_model_zip(folder: Path, path: str | os.PathLike) -> Path:
    """Pack a model folder into a new ``.zip`` (card compressed, weights stored); never replaces a file."""
    path = Path(path)
    if path.exists():
        raise SegNetsError(f"{path}: already exists; choose a new file name.")
    with atomic_file(path) as partial:
        with zipfile.ZipFile(partial, "w") as archive:
            archive.write(folder / CARD_FILE, CARD_FILE, compress_type=zipfile.ZIP_DEFLATED)
            archive.write(folder / WEIGHTS_FILE, WEIGHTS_FILE, compress_type=zipfile.ZIP_STORED)
    return path


def copy_model_folder(folder: Path, target: str | os.PathLike) -> Path:
    """Copy the two model files into the new folder ``target`` (atomically); never replaces a folder."""
    target = Path(target)
    if target.exists():
        raise SegNetsError(f"{target}: already exists; choose a new folder.")
    with atomic_folder(target) as partial:
        for name in MODEL_FILES:
            shutil.copyfile(folder / name, partial / name)
    return target


def keep_aside(net: nn.Module, card: ModelCard, places: list[Path]) -> tuple[Path | None, list[str]]:
    """Save ``net`` with ``card`` in a new folder under the first of ``places`` that takes it (a model that
    could not go where it was meant to). Returns (folder or None, why each place failed)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    problems = []
    for place in places:
        folder = Path(place) / f"{card.id}-{card.version}-{stamp}-{os.getpid()}"
        try:
            return save(net, card, folder), problems
        except (OSError, SegNetsError, RuntimeError) as error:  # full, read-only, missing: try the next place
            problems.append(f"{place}: {getattr(error, 'strerror', None) or error}")
    return None, problems
