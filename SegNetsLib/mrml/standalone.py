"""A MRML scene without the Slicer application (PyPI ``slicer-core``, no Qt), for headless runs.

Does the part of Slicer's start-up the bridge needs: application logic with colors, and the
Volumes, Segmentations (its scene registers the labelmap/surface converters) and SubjectHierarchy
module logics. Inside the Slicer application use ``slicer.mrmlScene`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StandaloneScene:
    scene: object
    app_logic: object
    volumes_logic: object
    segmentations_logic: object
    subject_hierarchy_logic: object


def attach_module_logic(app_logic, scene, name: str, logic):
    """Connect a module logic to the scene and register it with the application logic under ``name``."""
    logic.SetMRMLScene(scene)
    logic.SetMRMLApplicationLogic(app_logic)
    app_logic.SetModuleLogic(name, logic)
    return logic


def create_scene() -> StandaloneScene:
    """A new vtkMRMLScene with the module logics attached (does not touch ``slicer.mrmlScene``).

    Keep the returned object alive while the scene is in use: it owns the logics (VTK frees them otherwise).
    """
    import slicer
    from vtkmodules.vtkCommonCore import vtkCollection

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    colors = app_logic.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app_logic.SetModuleLogic("Colors", colors)
    app_logic.SetSliceLogics(vtkCollection())
    app_logic.SetViewLogics(vtkCollection())
    return StandaloneScene(
        scene=scene,
        app_logic=app_logic,
        volumes_logic=attach_module_logic(app_logic, scene, "Volumes", slicer.vtkSlicerVolumesLogic()),
        segmentations_logic=attach_module_logic(
            app_logic, scene, "Segmentations", slicer.vtkSlicerSegmentationsModuleLogic()
        ),
        subject_hierarchy_logic=attach_module_logic(
            app_logic, scene, "SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic()
        ),
    )
