"""A read-only JSON view of what the server holds, for end-to-end tests (``segnets web --status-endpoint``).

``GET /segnets/status.json`` answers with the loaded volume, the annotation's voxels per segment and
its annotated slices, the result's voxels per segment, the job's progress, the panel's messages and,
for each slice view, what a test needs to aim the mouse: the slice node's XY-to-RAS matrix, the view
size in pixels and the trame state name of its slice slider. It is computed on request on the event
loop (the thread that owns the scene) and is off unless asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aiohttp import web
from trame_server import Server
from trame_server.utils.typed_state import TypedState
from trame_slicer.app.logic import get_view_slider_typed_state
from trame_slicer.app.ui import PaintEffectState

from SegNetsLib.core.annotation import annotated_slices
from SegNetsLib.mrml import annotation_from_segmentation
from SegNetsLib.mrml.volumes import ijk_to_ras_of
from SegNetsLib.web.actions import PanelActions

ROUTE = "/segnets/status.json"


def _matrix(vtk_matrix) -> list[list[float]]:
    return [[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)]


def segment_voxels(segmentation_node, volume_node) -> tuple[dict[str, int], dict[int, list[int]]]:
    """Voxels per segment name in the volume's grid, and the slices holding painted voxels."""
    segmentation = segmentation_node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    if not ids:
        return {}, {0: [], 1: [], 2: []}
    labels, label_to_segment = annotation_from_segmentation(segmentation_node, ids, volume_node)
    counts = np.bincount(labels.array.ravel(), minlength=len(ids) + 1)
    voxels = {segmentation.GetSegment(sid).GetName(): int(counts[value]) for value, sid in label_to_segment.items()}
    return voxels, annotated_slices(labels.array)


class StatusEndpoint:
    """Registers the status route on the trame server and builds its answer."""

    def __init__(self, server: Server, slicer_app, actions: PanelActions) -> None:
        self._server = server
        self._slicer_app = slicer_app
        self._actions = actions
        server.controller.on_server_bind.add(self._bind)

    def _bind(self, wslink_server) -> None:
        wslink_server.app.router.add_get(ROUTE, self._handle)

    async def _handle(self, _request) -> web.Response:
        return web.json_response(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        actions = self._actions
        data = actions.data
        volume = actions.volume_node
        status: dict[str, Any] = {
            "volume": None,
            "annotation": None,
            "result": None,
            "job": {
                "busy": data.busy,
                "kind": data.job_kind,
                "progress": data.progress,
                "stage": data.stage,
                "iteration": data.iteration,
                "losses": list(data.losses),
                "validation_dice": data.validation_dice,
                "round": data.round,
                "suggestion": None
                if data.suggested_slice is None
                else {"axis": data.suggested_axis, "index": data.suggested_slice, "text": data.round_text},
            },
            "message": data.message,
            "error": data.error,
            "models": [item.value for item in data.models],
            "model_key": data.model_key,
            "time_budget_s": self._server.state[actions.names.time_budget_s],  # as the page sent it ("" when emptied)
            "active_effect": actions.editor.get_active_effect_name(),
            "views": self._views(),
            "brush": self._brush(),
        }
        if volume is not None:
            image = volume.GetImageData()
            status["volume"] = {
                "name": volume.GetName(),
                "shape_kji": list(reversed(image.GetDimensions())),
                "ijk_to_ras": ijk_to_ras_of(volume).tolist(),
            }
            for key, node in (("annotation", actions.annotation_node), ("result", actions.result_node)):
                if node is not None:
                    voxels, slices = segment_voxels(node, volume)
                    status[key] = {"name": node.GetName(), "voxels": voxels, "slices": slices}
        return status

    def _brush(self) -> dict[str, Any]:
        """The paint brush's diameter (percent of the view height) and the state name that sets it."""
        brush = TypedState(self._server.state, PaintEffectState)
        return {
            "diameter_percent": brush.data.brush_diameter_slider.value,
            "diameter_state": brush.name.brush_diameter_slider.value,
            "sphere": brush.data.use_sphere_brush,
        }

    def _views(self) -> dict[str, Any]:
        views = {}
        scene = self._slicer_app.scene
        for view in self._slicer_app.view_manager.get_slice_views():
            tag = view.get_singleton_tag()
            node = scene.GetSingletonNode(tag, "vtkMRMLSliceNode")
            if node is None:
                continue
            slider = get_view_slider_typed_state(self._server, view)
            views[view.get_orientation().lower()] = {
                "tag": tag,
                "xy_to_ras": _matrix(node.GetXYToRAS()),
                "dimensions": list(node.GetDimensions()),
                "slice_value": view.get_slice_value(),
                "slider_state": slider.name.value,
            }
        return views
