"""A real MRML scene from PyPI's slicer-core (Slicer's own C++ classes, no Qt) for tests.

Builds on :func:`SegNetsLib.mrml.standalone.create_scene` (application logic, colors, Volumes,
Segmentations, SubjectHierarchy) and adds what tests of Slicer-side code also need: the
Terminologies and Markups logics and the globals ``slicer.util`` looks up (``slicer.mrmlScene``,
``slicer.modules.<name>.logic()``). Without the Segmentations logic, ``AddEmptySegment`` fails.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

from SegNetsLib.mrml.standalone import StandaloneScene, attach_module_logic, create_scene


def terminology_dir() -> Path | None:
    """Slicer's terminology JSON files as shipped in the installed trame-slicer package, if any."""
    try:
        import trame_slicer
    except ImportError:
        return None
    folder = Path(trame_slicer.__file__).parent / "resources" / "terminologies"
    return folder if folder.is_dir() else None


@dataclass
class MRMLHarness:
    """The standalone scene (``base`` keeps its logics alive) plus the test-only module logics."""

    base: StandaloneScene
    terminologies_logic: object
    markups_logic: object

    @property
    def scene(self):
        return self.base.scene

    @property
    def app_logic(self):
        return self.base.app_logic

    @property
    def volumes_logic(self):
        return self.base.volumes_logic

    @property
    def segmentations_logic(self):
        return self.base.segmentations_logic

    @property
    def subject_hierarchy_logic(self):
        return self.base.subject_hierarchy_logic


def create_harness() -> MRMLHarness:
    """Build a fresh scene with module logics and install the ``slicer.util`` globals."""
    import slicer

    base = create_scene()
    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    share_dir = terminology_dir()
    if share_dir is not None:
        terminologies.SetModuleShareDirectory(str(share_dir))
    harness = MRMLHarness(
        base=base,
        terminologies_logic=attach_module_logic(base.app_logic, base.scene, "Terminologies", terminologies),
        markups_logic=attach_module_logic(base.app_logic, base.scene, "Markups", slicer.vtkSlicerMarkupsLogic()),
    )
    slicer.mrmlScene = base.scene
    slicer.modules = types.SimpleNamespace(
        volumes=types.SimpleNamespace(logic=lambda: harness.volumes_logic),
        segmentations=types.SimpleNamespace(logic=lambda: harness.segmentations_logic),
        terminologies=types.SimpleNamespace(logic=lambda: harness.terminologies_logic),
        subjecthierarchy=types.SimpleNamespace(logic=lambda: harness.subject_hierarchy_logic),
        markups=types.SimpleNamespace(logic=lambda: harness.markups_logic),
    )
    return harness
