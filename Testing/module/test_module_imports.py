"""SegNets.py loaded whole, as Slicer loads a scripted module, from a clone: it finds its SegNetsPanel package and
SegNetsLib, and its classes are where Slicer looks for them. Slicer's own Python modules (qt, slicer, vtk) cannot
be imported here; a child process gets minimal stand-ins for the names SegNets.py and SegNetsPanel import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LOAD = textwrap.dedent(
    """
    import importlib.util, json, sys, types

    def module(name, **names):
        sys.modules[name] = types.ModuleType(name)
        sys.modules[name].__dict__.update(names)
        return sys.modules[name]

    class Base:
        def __init__(self, *args):
            pass

    class Module(Base):
        # as Slicer's ScriptedLoadableModule.__init__: the icon is <folder of the .py>/Resources/Icons/<name>.png

        def __init__(self, parent):
            import os

            self.parent = parent
            icon = os.path.join(os.path.dirname(parent.path), "Resources/Icons", type(self).__name__ + ".png")
            if os.path.isfile(icon):
                parent.icon = qt.QIcon(icon)

    reloaded = []

    class Widget(Base):
        def onReload(self):
            reloaded.append(sorted(n for n in sys.modules if n.split(".")[0] == "SegNetsPanel"))

    qt = module("qt", QTimer=object, QIcon=lambda path: {"icon": path})
    module("vtk")
    slicer = module("slicer", vtkMRMLMarkupsROINode=object, vtkMRMLScalarVolumeNode=object,
                    vtkMRMLSegmentationNode=object)
    module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
    module("slicer.parameterNodeWrapper", Choice=lambda *a: None, WithinRange=lambda *a: None,
           parameterNodeWrapper=lambda cls: cls)
    module("slicer.ScriptedLoadableModule", ScriptedLoadableModule=Module, ScriptedLoadableModuleLogic=Base,
           ScriptedLoadableModuleTest=Base, ScriptedLoadableModuleWidget=Widget)
    module("slicer.util", VTKObservationMixin=Base)
    sys.path = [p for p in sys.path if p not in ("", SEGNETS_DIR)]  # as Slicer starts: neither folder importable
    spec = importlib.util.spec_from_file_location("SegNets", SEGNETS_DIR + "/SegNets.py")
    segnets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(segnets)
    import SegNetsLib, SegNetsPanel
    bases = [c.__name__ for c in segnets.SegNetsWidget.__mro__]
    segnets.SegNetsWidget.onReload(object.__new__(segnets.SegNetsWidget))
    parent = types.SimpleNamespace(path=SEGNETS_DIR + "/SegNets.py")
    segnets.SegNets(parent)
    print(json.dumps({
        "classes": [n for n in ("SegNets", "SegNetsWidget", "SegNetsLogic", "SegNetsTest") if hasattr(segnets, n)],
        "bases": bases,
        "panel": SegNetsPanel.__file__,
        "library": SegNetsLib.__file__,
        "resources": str(segnets.resourcesDir()),
        "panel_modules_at_reload": reloaded[0],
        "icon": getattr(parent, "icon", {}).get("icon"),
    }))
    """
)


def test_segnets_py_loads_from_a_clone_with_its_panel_package_and_library():
    code = f"SEGNETS_DIR = {str(ROOT / 'SegNets')!r}\n" + LOAD
    # -S: no site-packages, so nothing (an editable install, say) makes SegNetsLib importable but the module itself
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd="/", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["classes"] == ["SegNets", "SegNetsWidget", "SegNetsLogic", "SegNetsTest"]
    assert {"ModelLibraryControls", "CorrectionRoundControls"} <= set(loaded["bases"])
    assert Path(loaded["panel"]).parent == ROOT / "SegNets" / "SegNetsPanel"
    assert Path(loaded["library"]).parent == ROOT / "SegNetsLib"
    assert Path(loaded["resources"]) == ROOT / "Resources"
    assert loaded["panel_modules_at_reload"] == []  # Reload drops the package, so it is read again
    # Slicer looks for the icon beside SegNets.py only; a clone keeps it in the repository's Resources/
    assert loaded["icon"] is not None and Path(loaded["icon"]) == ROOT / "Resources" / "Icons" / "SegNets.png"
