"""The panel's Models section: SegNetsLogic's own methods (compiled from SegNetsPanel's source) on a real library."""

from __future__ import annotations
import __future__

import ast
import types
import zipfile
from pathlib import Path

import panel_source
import pytest


def _logic_method(name: str, **attributes):
    """An object with ``SegNetsLogic.<name>`` from the module's source plus ``attributes``."""
    namespace = {"Path": Path}
    node = panel_source.find(f"SegNetsLogic.{name}")
    module = ast.Module(body=[node], type_ignores=[])
    flags = __future__.annotations.compiler_flag
    exec(compile(module, str(panel_source.MODULE), "exec", flags=flags, dont_inherit=True), namespace)
    instance = type("StandIn", (), {name: namespace[name]})()
    for key, value in attributes.items():
        setattr(instance, key, value)
    return instance


@pytest.mark.parametrize("typed", ["liver", "liver.ZIP"])
def test_export_writes_a_zip_when_the_save_dialog_returns_a_name_without_its_suffix(tmp_path, typed):
    """Qt's own save dialog (Slicer on Linux) returns the name as typed: the "*.zip" filter adds no suffix, and the
    library writes a model folder at a path without one."""
    from SegNetsLib.app.selftest import add_tiny_model
    from SegNetsLib.models.library import ModelLibrary

    library = ModelLibrary(tmp_path / "models")
    entry = add_tiny_model(library, "tiny", patch_size=(8, 16, 16))
    logic = _logic_method("exportModel", core=lambda: types.SimpleNamespace(library=library))
    written = Path(logic.exportModel(f"{entry.id}@{entry.version}", str(tmp_path / typed)))
    assert written.is_file() and zipfile.is_zipfile(written) and written.name.lower() == "liver.zip"
    assert not (tmp_path / "liver").exists()
