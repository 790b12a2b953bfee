"""Slicer's serialized terminology tag <-> :class:`SegNetsLib.card.card.Terminology`."""

from __future__ import annotations

from SegNetsLib.card.card import Terminology


def terminology_from_slicer_string(text: str) -> Terminology | None:
    """Parse a segment's ``TerminologyEntry`` tag (the inverse of ``Terminology.as_slicer_string``).

    Returns None for an empty or malformed tag, or one without a category and type.
    """
    return Terminology.from_slicer_string(text)
