"""Locator models: a card's ``roi.locator`` naming another model that finds the RoIs.

``roi.locator`` is "self" or "runet" (the network locates its own RoIs) or a model reference: a library
``id`` (its highest version) or ``id@version``, or a model folder or ``.zip``. The reference is resolved
to files when the main :class:`~SegNetsLib.inference.predictor.Predictor` is built; the network is loaded on the
first prediction that locates RoIs and kept warm beside the main one. It segments the whole input with
its own card (spacing, orientation, normalization) and RoI localization off, and every nonzero label of
its output counts as foreground.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from SegNetsLib.card.card import ModelCard, RoiSettings
from SegNetsLib.card.versions import split_reference
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models.library import ModelLibrary, load, model_at


def locator_files(card: ModelCard, library_root: Path | None = None) -> Path:
    """The model folder or ``.zip`` that ``card.roi.locator`` names: a path, or ``id[@version]`` in the library at
    ``library_root`` (the one the main model came from; default: ``$SEGNETS_MODELS`` or ``~/.segnets/models``).

    Raises a SegNetsError naming ``card`` and the locator when the reference names no model.
    """
    reference = card.roi.locator
    try:
        path = model_at(reference)  # one written as a path is never a library model of a similar name
        if path is not None and (path.is_dir() or path.suffix.lower() == ".zip"):
            return path
        return ModelLibrary(library_root).find(*split_reference(reference))
    except SegNetsError as error:
        raise _unusable(card, error) from None


def load_locator(card: ModelCard, files: Path) -> tuple[nn.Module, ModelCard]:
    """(network on the CPU, its card with RoI localization off) of ``card``'s locator model at ``files``.

    Raises a SegNetsError when it cannot be loaded or its input channels (count and modalities) differ
    from ``card``'s.
    """
    try:
        net, locator_card = load(files)
    except SegNetsError as error:
        raise _unusable(card, error) from None
    wanted, taken = _modalities(card), _modalities(locator_card)
    if taken != wanted:
        raise SegNetsError(
            f"model {card.id!r}: RoI locator {card.roi.locator!r} takes input channels ({', '.join(taken)}) "
            f"but the model takes ({', '.join(wanted)})."
        )
    # the locator always segments the whole volume, so its own RoI settings (even its own locator) never apply
    return net, replace(locator_card, roi=RoiSettings(mode="off"))


def _unusable(card: ModelCard, error: SegNetsError) -> SegNetsError:
    return SegNetsError(
        f"model {card.id!r}: RoI locator {card.roi.locator!r} is not self, runet or a usable model "
        f"({str(error).rstrip('.')})."
    )


def _modalities(card: ModelCard) -> list[str]:
    """The input channels' modalities in order, e.g. ["MR", "MR"]."""
    return [channel.modality.upper() for channel in card.in_channels]
