"""A real MRML scene from PyPI's slicer-core (Slicer's own C++ classes, no Qt) for tests.

Does what qSlicerCoreApplication does at start-up: application logic, colors, and the Volumes,
Terminologies, Segmentations, SubjectHierarchy and Markups module logics, plus the globals that
``slicer.util`` looks up (``slicer.mrmlScene``, ``slicer.modules.<name>.logic()``).
Without the Segmentations logic attached, ``vtkSegmentation.AddEmptySegment`` fails.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path



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
    """The scene and the module logics a test can use."""

    scene: object
    app_logic: object
    volumes_logic: object
    segmentations_logic: object
    terminologies_logic: object
    subject_hierarchy_logic: object
    markups_logic: object


def _attach(app_logic, scene, name: str, logic) -> object:
    logic.SetMRMLScene(scene)
    logic.SetMRMLApplicationLogic(app_logic)
    app_logic.SetModuleLogic(name, logic)
    return logic


def create_harness() -> MRMLHarness:
    """Build a fresh scene with module logics and install the ``slicer.util`` globals."""
    import slicer
    from vtkmodules.vtkCommonCore import vtkCollection

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    color_logic = app_logic.GetColorLogic()
    color_logic.SetMRMLScene(scene)
    color_logic.AddDefaultColorNodes()
    app_logic.SetModuleLogic("Colors", color_logic)
    app_logic.SetSliceLogics(vtkCollection())
    app_logic.SetViewLogics(vtkCollection())

    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    share_dir = terminology_dir()
    if share_dir is not None:
        terminologies.SetModuleShareDirectory(str(share_dir))
    harness = MRMLHarness(
        scene=scene,
        app_logic=app_logic,
        volumes_logic=_attach(app_logic, scene, "Volumes", slicer.vtkSlicerVolumesLogic()),
        terminologies_logic=_attach(app_logic, scene, "Terminologies", terminologies),
        segmentations_logic=_attach(app_logic, scene, "Segmentations", slicer.vtkSlicerSegmentationsModuleLogic()),
        subject_hierarchy_logic=_attach(
            app_logic, scene, "SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic()
        ),
        markups_logic=_attach(app_logic, scene, "Markups", slicer.vtkSlicerMarkupsLogic()),
    )
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(
        volumes=types.SimpleNamespace(logic=lambda: harness.volumes_logic),
        segmentations=types.SimpleNamespace(logic=lambda: harness.segmentations_logic),
        terminologies=types.SimpleNamespace(logic=lambda: harness.terminologies_logic),
        subjecthierarchy=types.SimpleNamespace(logic=lambda: harness.subject_hierarchy_logic),
        markups=types.SimpleNamespace(logic=lambda: harness.markups_logic),
    )
    return harness
