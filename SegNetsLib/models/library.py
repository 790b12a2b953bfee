"""The user's model library: ``<root>/<id>/<version>/{card.json, weights.safetensors}``.

The root is ``~/.segnets/models`` unless the ``SEGNETS_MODELS`` environment variable (or, in Slicer,
the module settings) names another folder. Models are added atomically and never overwritten.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from SegNetsLib.card.card import ModelCard
from SegNetsLib.card.factory import legacy_slug, slug
from SegNetsLib.card.schema import CARD_FILE, read_card
from SegNetsLib.card.versions import latest, parse_version, split_reference, version_key
from SegNetsLib.core.constants import MODELS_ENV_VAR as ENV_VAR
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models.importers import read_model
from SegNetsLib.models.store import copy_model_folder, keep_aside, load_folder, load_zip, save, write_model_zip

DEFAULT_ROOT = Path("~/.segnets/models")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

log = logging.getLogger(__name__)


RECOVERED = "recovered"  # beside the library: models that could not be added to it


class ModelKept(SegNetsError):
    """A trained model could not be added to the library and was saved in ``path`` instead."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class ModelEntry:
    """One model version in the library."""

    id: str
    version: str
    path: Path
    card: ModelCard


def _describe(card: ModelCard) -> str:
    """E.g. "unet3d, 1 input channel, labels liver, tumor"."""
    channels = len(card.in_channels)
    labels = ", ".join(label.name for label in card.labels)
    return f"{card.architecture}, {channels} input channel{'s' if channels != 1 else ''}, labels {labels}"


def default_root() -> Path:
    """``$SEGNETS_MODELS`` if set, else ``~/.segnets/models``."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_ROOT).expanduser()


class ModelLibrary:
    """Lists, adds, imports, exports and removes models under one root folder."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root else default_root()
        if self.root.exists() and not self.root.is_dir():
            raise SegNetsError(f"{self.root}: the model library is a file, not a folder.")

    def __repr__(self) -> str:
        return f"ModelLibrary({str(self.root)!r})"

    def _folder(self, model_id: str, version: str | None = None) -> Path:
        if not isinstance(model_id, str) or not _ID.match(model_id):
            raise SegNetsError(f"model id {model_id!r} is not valid; use letters, digits, '.', '_' and '-'.")
        if version is None:
            return self.root / model_id
        parse_version(version)
        return self.root / model_id / version

    def versions(self, model_id: str) -> list[str]:
        """Versions of ``model_id`` in the library, oldest first."""
        folder = self._folder(model_id)
        if not folder.is_dir():
            return []
        found = []
        for child in folder.iterdir():
            if child.name.startswith(".") or not (child / CARD_FILE).is_file():
                continue  # partial writes (".name.partial") and stray folders
            try:
                parse_version(child.name)
            except SegNetsError:
                continue
            found.append(child.name)
        return sorted(found, key=version_key)

    def list(self) -> list[ModelEntry]:
        """Every readable model version, sorted by id then version; unreadable cards are logged and skipped."""
        entries = []
        if not self.root.is_dir():
            return entries
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir() or not _ID.match(folder.name):
                continue
            for version in self.versions(folder.name):
                path = folder / version
                try:
                    card = read_card(path / CARD_FILE)
                except SegNetsError as error:
                    log.warning("skipping %s: %s", path, error)
                    continue
                if (card.id, card.version) != (folder.name, version):  # listed as found: by its folders
                    log.warning("%s: its card names it %s %s; it is found as %s %s", path, card.id, card.version,
                                folder.name, version)  # fmt: skip
                entries.append(ModelEntry(folder.name, version, path, card))
        return entries

    def find(self, model_id: str, version: str | None = None) -> Path:
        """Folder of ``model_id`` at ``version`` (default: the highest semantic version). A name saved as a
        different id (``--save-model r1-ts_pulmonary`` is stored as ``r1-ts-pulmonary``) finds its model."""
        wanted = model_id
        versions = self.versions(model_id) if _ID.match(str(model_id)) else []
        if not versions and slug(model_id) != model_id:
            model_id = slug(model_id)
            versions = self.versions(model_id)
        older = None if versions else legacy_slug(str(wanted))
        if older is not None and _ID.match(older):  # a name with accents, saved before they were dropped from ids
            model_id, versions = older, self.versions(older)
        if not versions:
            raise SegNetsError(
                f"model {wanted!r} is not in the library at {self.root} ('segnets models list' shows what is)."
            )
        if version is None:
            version = latest(versions)
        elif version not in versions:
            raise SegNetsError(
                f"model {model_id!r} has no version {version} in the library; it has {', '.join(versions)}."
            )
        return self._folder(model_id, version)

    def card(self, model_id: str, version: str | None = None) -> ModelCard:
        return read_card(self.find(model_id, version) / CARD_FILE)

    def load(
        self, model_id: str, version: str | None = None, device: str | torch.device = "cpu"
    ) -> tuple[nn.Module, ModelCard]:
        return load_folder(self.find(model_id, version), device)

    def _new_folder(self, card: ModelCard) -> Path:
        folder = self._folder(card.id, card.version)
        if folder.exists():
            raise SegNetsError(
                f"model {card.id!r} version {card.version} is already in the library; models are never "
                "overwritten, so give the new one another version or id."
            )
        return folder

    def add(self, net: nn.Module, card: ModelCard) -> Path:
        """Save ``net`` with ``card`` as a new model version (atomic); refuses an existing id and version."""
        folder = self._new_folder(card)
        try:
            return save(net, card, folder)
        finally:
            if folder.parent.is_dir() and not any(folder.parent.iterdir()):
                folder.parent.rmdir()  # a failed first version leaves no empty id folder behind

    def add_or_keep(self, net: nn.Module, card: ModelCard) -> Path:
        """:meth:`add`, and when the library cannot take the model (the version was taken meanwhile, the disk
        is full, the folder is read-only) save it in a recovery folder instead and raise :class:`ModelKept`
        naming that folder; trained weights are never discarded."""
        try:
            return self.add(net, card)
        except (OSError, SegNetsError, RuntimeError) as error:
            reason = str(getattr(error, "strerror", None) or error).rstrip(".")
        places = [self.root.parent / RECOVERED, Path(tempfile.gettempdir()) / f"segnets-{RECOVERED}", Path.cwd()]
        folder, problems = keep_aside(net, card, places)
        if folder is None:
            raise SegNetsError(
                f"model {card.id!r} version {card.version} could not be added to the library at {self.root} "
                f"({reason}) nor kept anywhere else ({'; '.join(problems)})."
            )
        log.warning("model %s %s kept in %s (%s)", card.id, card.version, folder, reason)
        raise ModelKept(
            f"model {card.id!r} version {card.version} could not be added to the library at {self.root} ({reason}); "
            f"the trained model is kept in {folder}, add it later with 'segnets models import {folder}' "
            "(with --version to give it another version).",
            folder,
        )

    def import_path(self, path: str | os.PathLike, **options) -> ModelEntry:
        """Add the model at ``path``: a model folder, a model ``.zip``, or a bare state dict
        (``.safetensors``, ``.pt``, ``.pth``) described by ``options`` (see ``importers.read_model``)."""
        net, card = read_model(Path(path), **options)
        self._check_same_model(card, Path(path))
        folder = self.add(net, card)
        return ModelEntry(card.id, card.version, folder, card)

    def _check_same_model(self, card: ModelCard, path: Path) -> None:
        """Refuse a card whose id names a library model of another architecture, inputs or labels: it would become
        that model's newest version, the one its id loads."""
        versions = self.versions(card.id)
        if not versions:
            return
        held = self.card(card.id, latest(versions))

        def kind(c: ModelCard) -> tuple:
            return c.architecture, len(c.in_channels), [(label.value, label.name) for label in c.labels]

        if kind(held) != kind(card):
            raise SegNetsError(
                f"{path.name}: its id {card.id!r} names another model in the library ({_describe(held)}, not "
                f"{_describe(card)}); import it under its own id (--id)."
            )

    def export(self, model_id: str, path: str | os.PathLike, version: str | None = None) -> Path:
        """Write a model version as a ``.zip`` (when ``path`` ends in .zip) or as a new folder."""
        folder = self.find(model_id, version)
        path = Path(path)
        if path.suffix.lower() == ".zip":
            return write_model_zip(folder, path)
        return copy_model_folder(folder, path)

    def remove(self, model_id: str, version: str | None = None) -> list[str]:
        """Delete one version, or every version when ``version`` is None; returns the versions removed.

        Each folder is first renamed away, so a crash never leaves a half-deleted model visible.
        """
        if not model_id or model_id.startswith(".") or any(sep in model_id for sep in "/\\"):
            self._folder(model_id)  # a path, not an id or a name: refused as an invalid id
        found = self.find(model_id, version)  # a name finds its id (``find``); refused when not in the library
        model_id = found.parent.name
        versions = [found.name] if version else self.versions(model_id)
        for name in versions:
            folder = self._folder(model_id, name)
            trash = Path(tempfile.mkdtemp(prefix=f".{model_id}-{name}.", suffix=".removing", dir=self.root))
            os.rename(folder, trash / "model")
            shutil.rmtree(trash)
        id_folder = self._folder(model_id)
        if id_folder.is_dir() and not any(id_folder.iterdir()):
            id_folder.rmdir()
        return versions


def load(path_or_id: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """(network in eval mode, card) from a model folder, a model ``.zip``, or ``id[@version]`` in the library."""
    path = model_at(path_or_id)
    if path is not None and path.is_dir():
        return load_folder(path, device)
    if path is not None:
        if path.suffix.lower() != ".zip":
            raise SegNetsError(
                f"{path}: a model is a folder or a .zip; import bare weights with 'segnets models import'."
            )
        return load_zip(path, device)
    model_id, version = split_reference(str(path_or_id))
    if not (_ID.match(model_id) or _ID.match(slug(model_id))):  # a name ("Liver (patient 12)") finds its id
        raise SegNetsError(f"{path_or_id}: no such model folder, zip or library model id.")
    return ModelLibrary().load(model_id, version, device)


def model_at(reference: str | os.PathLike) -> Path | None:
    """The folder or file a model reference names on disk (a leading ``~`` is the home folder), or None for a
    library id; raises SegNetsError when it is written as a path (:func:`_names_a_path`) and nothing is there, so
    that a library model of a similar name never stands in for it."""
    if not str(reference).strip():  # Path("") is the current folder: never load that in a blank's place
        raise SegNetsError("the model reference is blank; give a library id, a model folder or a .zip.")
    path = Path(reference)
    if str(reference).startswith("~"):  # '--model=~/m' and Python callers pass the tilde unexpanded
        with contextlib.suppress(RuntimeError):  # no home folder known for it: the path stays as written
            path = path.expanduser()
    try:
        if path.is_dir() or path.is_file():
            return path
    except OSError:  # a name too long for the file system (ENAMETOOLONG): no such file
        pass
    if _names_a_path(str(reference)):
        raise SegNetsError(f"{reference}: no such model folder or .zip.")
    return None


def _names_a_path(reference: str) -> bool:
    """Whether a model reference is written as a path, not an id: it holds a folder separator (``./m``, ``/m``,
    ``models/m``, ``m/``, ``C:\\m``), starts with ``~`` or ends in ``.zip``; no id holds a separator."""
    return "/" in reference or "\\" in reference or reference.startswith("~") or reference.lower().endswith(".zip")
