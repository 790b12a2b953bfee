"""Validation of card.json against the JSON Schema shipped in ``SegNetsLib/card/card.schema.json``."""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from SegNetsLib.card.card import ModelCard
from SegNetsLib.core.errors import SegNetsError

CARD_FILE = "card.json"
MAX_CARD_BYTES = 4 * 1024 * 1024  # a card is a few kB; anything this large is not a card
MAX_CARD_DEPTH = 32  # a card nests 6 levels of objects and lists; deeper JSON exhausts Python's recursion
# a CT window's ends and 1 / its width stay far inside float32 (3.4e38): wider or narrower makes every input NaN or inf
MAX_WINDOW = 1e30


@functools.cache
def card_schema() -> dict[str, Any]:
    """The card JSON Schema (draft 2020-12), read from the package data."""
    text = resources.files("SegNetsLib.card").joinpath("card.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(card_schema())


def _field_path(parts) -> str:
    """E.g. "labels[0].color"; control characters in field names are escaped (the message stays one line)."""
    text = ""
    for part in parts:
        if not isinstance(part, int):
            part = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(part))
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    """One sentence naming the card field and what is wrong with it."""
    where = list(error.absolute_path)
    kind, expected = error.validator, error.validator_value
    if kind == "required":
        missing = next((name for name in expected if name not in error.instance), expected[0])
        return f"field '{_field_path(where + [missing])}' is required but missing"
    if kind == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"field '{_field_path(where + extra[:1])}' is not a card field"
    field = f"field '{_field_path(where)}'"
    value = json.dumps(error.instance)[:60]
    if kind == "type":
        return f"{field} must be of type {expected}, not {value}"
    if kind in ("enum", "const"):
        choices = ", ".join(json.dumps(choice) for choice in (expected if kind == "enum" else [expected]))
        return f"{field} is {value} but must be one of {choices}"
    if kind == "pattern":
        hint = (
            " (a semantic version such as 1.0.0)"
            if where == ["version"]
            else " (one line of text, no control characters)"
            if expected == card_schema()["$defs"]["one_line"]["pattern"]
            else f" (pattern {expected})"
        )
        return f"{field} is {value} but must match{hint}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        return f"{field} is {value} but must be {words} {expected}"
    if kind in ("minItems", "maxItems"):
        if error.schema.get("minItems") == error.schema.get("maxItems"):
            return f"{field} must have exactly {expected} items, not {len(error.instance)}"
        words = "at least" if kind == "minItems" else "at most"
        return f"{field} must have {words} {expected} item{'s' if expected != 1 else ''}, not {len(error.instance)}"
    if kind == "minLength":
        return f"{field} must not be empty"
    if kind == "oneOf":
        return f"{field} has an invalid value {value}: {error.schema.get('description', 'see card.schema.json')}"
    return f"{field}: {error.message}"


def _first_non_finite(data: Any, path: list) -> list | None:
    if isinstance(data, float) and not math.isfinite(data):
        return path
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, (list, tuple)) else ()
    for key, value in children:
        found = _first_non_finite(value, path + [key])
        if found is not None:
            return found
    return None


def _json_form(data: Any, source: str) -> Any:
    """The card exactly as card.json holds it (tuples as lists, keys as strings), finite numbers only."""
    try:
        return json.loads(json.dumps(data, allow_nan=False))
    except ValueError:  # NaN / Infinity
        where = _field_path(_first_non_finite(data, []) or [])
        raise SegNetsError(
            f"{source}: field '{where}' must be a finite number (null if undefined), not NaN or infinity."
        ) from None
    except TypeError as error:
        raise SegNetsError(f"{source}: {error}; card values must be JSON numbers, strings, lists or objects.") from None


def validate_card(data: dict[str, Any], source: str = CARD_FILE) -> dict[str, Any]:
    """Check a card dict against the schema and the rules a schema cannot express; return its JSON form.

    Raises SegNetsError naming the first bad field, e.g. "card.json: field 'labels[0].color' must ...".
    """
    if not isinstance(data, dict):
        raise SegNetsError(f"{source}: a model card must be a JSON object, not {type(data).__name__}.")
    data = _json_form(data, source)
    errors = sorted(
        _validator().iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    if errors:
        # prefer the deepest error within oneOf branches: it names the precise field
        error = errors[0]
        if error.validator == "oneOf" and error.context:
            specific = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
            error = max(specific or error.context, key=lambda e: len(e.absolute_path))
        raise SegNetsError(f"{source}: {_describe(error)}.")
    values = [label["value"] for label in data["labels"]]
    for index, value in enumerate(values):
        if value in values[:index]:
            raise SegNetsError(
                f"{source}: field 'labels[{index}].value' repeats label value {value}; values must be unique."
            )
    window = (data.get("normalization") or {}).get("window")
    if window is not None and not window[0] < window[1]:
        raise SegNetsError(
            f"{source}: field 'normalization.window' is {window} but must be [low, high] with low < high."
        )
    if window is not None and not (
        -MAX_WINDOW <= window[0] and window[1] <= MAX_WINDOW and window[1] - window[0] >= 1 / MAX_WINDOW
    ):
        raise SegNetsError(
            f"{source}: field 'normalization.window' is {window} but must lie within ±{MAX_WINDOW:g} with its ends "
            f"at least {1 / MAX_WINDOW:g} apart (inputs are normalized in 32-bit floats)."
        )
    return data


def read_card(path: str | Path, source: str | None = None) -> ModelCard:
    """Read and validate a card.json file; errors name it ``source`` (default: its path)."""
    path = Path(path)
    source = source or str(path)
    if not path.is_file():
        raise SegNetsError(f"{source}: the model has no card.json.")
    if path.stat().st_size > MAX_CARD_BYTES:
        raise SegNetsError(
            f"{source}: card.json is larger than {MAX_CARD_BYTES // 1024 // 1024} MiB; it is not a model card."
        )
    return card_from_json(path.read_bytes(), source)


def _nested_deeper_than(data: Any, limit: int) -> bool:
    """Whether JSON ``data`` nests objects and lists more than ``limit`` levels (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, (dict, list)):
            if level > limit:
                return True
            stack.extend((child, level + 1) for child in (value.values() if isinstance(value, dict) else value))
    return False


def card_from_json(text: bytes | str, source: str = CARD_FILE) -> ModelCard:
    """Parse, validate and build a card from card.json text."""
    too_deep = SegNetsError(
        f"{source}: nests more than {MAX_CARD_DEPTH} levels of objects and lists; not a model card."
    )
    try:
        data = json.loads(text)
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as error:
        raise SegNetsError(f"{source}: not valid JSON ({error}).") from None
    if _nested_deeper_than(data, MAX_CARD_DEPTH):
        raise too_deep
    return ModelCard.from_dict(validate_card(data, source))


def card_to_json(card: ModelCard) -> str:
    """The validated card.json text of ``card``."""
    return json.dumps(validate_card(card.to_dict()), indent=2) + "\n"


def finite_or_none(value: float) -> float | None:
    """A metric as the card stores it: NaN/Inf (undefined, e.g. Dice of an absent class) become null."""
    return float(value) if value is not None and math.isfinite(value) else None
