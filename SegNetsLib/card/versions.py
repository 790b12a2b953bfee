"""Semantic versions of models: parse, order, bump."""

from __future__ import annotations

import re
from collections.abc import Iterable

from SegNetsLib.core.errors import SegNetsError

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$")


def split_reference(reference: str) -> tuple[str, str | None]:
    """A model reference "id@version" as (id, version): "liver-ct@1.2.0" -> ("liver-ct", "1.2.0"), "liver-ct" -> ("liver-ct", None)."""
    model_id, _, version = reference.partition("@")
    return model_id, version or None


def parse_version(text: str) -> tuple[int, int, int, str]:
    """(major, minor, patch, prerelease) of a semantic version string; build metadata is ignored."""
    match = _SEMVER.match(text)
    if not match:
        raise SegNetsError(f"version {text!r} is not a semantic version such as 1.0.0.")
    major, minor, patch, prerelease, _build = match.groups()
    return int(major), int(minor), int(patch), prerelease or ""


def version_key(text: str) -> tuple:
    """Sort key following semantic-version precedence (1.0.0-rc1 < 1.0.0 < 1.0.1 < 1.1.0)."""
    major, minor, patch, prerelease = parse_version(text)
    if not prerelease:
        return (major, minor, patch, 1, ())
    identifiers = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in prerelease.split("."))
    return (major, minor, patch, 0, identifiers)


def latest(versions: Iterable[str]) -> str | None:
    """The highest version, or None for none."""
    return max(versions, key=version_key, default=None)


def bump(version: str, part: str = "minor") -> str:
    """The next release after ``version``: "major" (2.0.0), "minor" (1.3.0) or "patch" (1.2.4)."""
    major, minor, patch, _ = parse_version(version)
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise SegNetsError(f"version part {part!r} must be 'major', 'minor' or 'patch'.")
