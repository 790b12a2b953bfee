"""Slicer's serialized terminology tag <-> :class:`SegNetsLib.card.card.Terminology`."""

from __future__ import annotations

from SegNetsLib.card.card import Code, Terminology


def _code(text: str) -> Code | None:
    parts = text.split("^")
    if len(parts) != 3 or not any(parts):
        return None
    return Code(*parts)


def terminology_from_slicer_string(text: str) -> Terminology | None:
    """Parse a segment's ``TerminologyEntry`` tag (the inverse of ``Terminology.as_slicer_string``).

    Returns None for an empty or malformed tag, or one without a category and type.
    """
    fields = text.split("~") if text else []
    if len(fields) != 7:
        return None
    category, type_ = _code(fields[1]), _code(fields[2])
    if category is None or type_ is None:
        return None
    return Terminology(
        category=category,
        type=type_,
        type_modifier=_code(fields[3]),
        anatomic_region=_code(fields[5]),
        anatomic_region_modifier=_code(fields[6]),
        context=fields[0],
        anatomic_context=fields[4],
    )
