"""The Slicer module's Python source (SegNets.py and its SegNetsPanel package), for tests that read it or compile
its functions without Slicer."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "SegNets" / "SegNets.py"
FILES = [MODULE, *sorted((ROOT / "SegNets" / "SegNetsPanel").glob("*.py"))]


def source() -> str:
    """Every file's text, SegNets.py first."""
    return "\n".join(path.read_text() for path in FILES)


@functools.cache
def top_level() -> tuple[ast.stmt, ...]:
    """The top-level statements of every file, SegNets.py first (parsed once)."""
    return tuple(node for path in FILES for node in ast.parse(path.read_text()).body)


def _class(name: str, body: tuple[ast.stmt, ...]) -> ast.ClassDef:
    return next(n for n in body if isinstance(n, ast.ClassDef) and n.name == name)


def class_methods(name: str) -> dict[str, ast.FunctionDef]:
    """The methods of class ``name``, those of its bases defined in the module's files included (its own first)."""
    body = top_level()
    names = {n.name for n in body if isinstance(n, ast.ClassDef)}
    found: dict[str, ast.FunctionDef] = {}
    pending = [_class(name, body)]
    while pending:
        cls = pending.pop(0)
        for node in cls.body:
            if isinstance(node, ast.FunctionDef):
                found.setdefault(node.name, node)
        pending += [_class(b.id, body) for b in cls.bases if isinstance(b, ast.Name) and b.id in names]
    return found


def find(qualname: str) -> ast.FunctionDef | ast.ClassDef:
    """The function ``name`` or method ``Class.name`` (found in the class or a base of it defined here)."""
    if "." in qualname:
        cls, method = qualname.split(".")
        return class_methods(cls)[method]
    return next(n for n in top_level() if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == qualname)


def constant(name: str):
    """The literal value assigned to the top-level ``name``."""
    for node in top_level():
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return ast.literal_eval(node.value)
    raise KeyError(name)
