"""SegNets Web: trame-slicer's slice and 3D views and Segment Editor, plus the SegNets panel.

The scene, views, volume reader and Segment Editor are Slicer's own C++ classes (slicer-core),
driven by trame-slicer's logic; the SegNets panel calls the same SegNetsLib code as the Slicer
module (:mod:`SegNetsLib.app.logic`, :mod:`SegNetsLib.mrml`, :class:`SegNetsLib.app.worker.ThreadWorker`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from trame.app import TrameApp
from trame.widgets.vuetify3 import Template
from trame_server import Server
from trame_server.utils.typed_state import TypedState
from trame_slicer import module as trame_slicer_module
from trame_slicer.app.logic import (
    LayoutButtonLogic,
    MprInteractionButtonLogic,
    SegmentEditorLogic,
    VolumePropertyLogic,
)
from trame_slicer.app.ui import (
    ControlButton,
    LayoutButton,
    LoadVolumeUI,
    MprInteractionButton,
    PaintEffectState,
    SegmentEditorToolbarUI,
    SegmentEditorUI,
    SegmentEditorUndoRedoUI,
    ViewerLayout,
    ViewerLayoutState,
    VolumePropertyUI,
)
from trame_slicer.core import SlicerApp
from trame_slicer.rca_view import register_rca_factories
from vtkmodules.vtkCommonCore import vtkCommand

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.web.actions import PanelActions
from SegNetsLib.web.datafolder import DataVolumes
from SegNetsLib.web.loading import VolumeLoader
from SegNetsLib.web.panel import SegNetsPanel
from SegNetsLib.web.state import PanelState
from SegNetsLib.web.status import StatusEndpoint

log = logging.getLogger(__name__)

PANEL_TOOL = "SegNetsPanel"
DEFAULT_LAYOUT = "Axial Primary"


class SegNetsWebApp(TrameApp):
    """The web application.

    ``data`` (a volume file or a DICOM file of a series, or a folder whose first volume is used) is loaded when a
    browser connects; a folder of several volumes gives the page a selector of them (:mod:`SegNetsLib.web.datafolder`);
    ``status_endpoint`` serves ``/segnets/status.json`` for tests.
    """

    def __init__(self, server: Server | None = None, data: Path | None = None, status_endpoint: bool = False):
        super().__init__(server)
        self.server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        self.data_volumes = DataVolumes(data)
        self._data_loaded = False

        register_rca_factories(self.slicer_app.view_manager, self.server)
        self._viewer = TypedState(self.state, ViewerLayoutState)
        self._panel_state = TypedState(self.state, PanelState)
        self._panel_state.data.data_volumes = self.data_volumes.choices
        self._editor_logic = SegmentEditorLogic(self.server, self.slicer_app)
        self._volume_property_logic = VolumePropertyLogic(self.server, self.slicer_app)
        self._layout_logic = LayoutButtonLogic(self.server, self.slicer_app)
        self._mpr_logic = MprInteractionButtonLogic(self.server, self.slicer_app)
        self.loader = VolumeLoader(self.slicer_app)
        self.actions = PanelActions(self.server, self.slicer_app, self._panel_state)
        self.status = StatusEndpoint(self.server, self.slicer_app, self.actions) if status_endpoint else None

        self._build_ui()
        self._use_flat_brush()
        self.state["trame__title"] = "SegNets"
        self.state[self._layout_logic.name.current_layout_id] = DEFAULT_LAYOUT
        self.ctrl.on_client_connected.add(self._on_client_connected)
        self.actions.refresh_models()

    # --- layout ----------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        with ViewerLayout(self.server, title="SegNets", is_drawer_visible=True) as self.layout:
            self.layout.title.set_text("SegNets Web")
            with self.layout.appbar, Template(v_slot_prepend=True):
                load_ui = LoadVolumeUI()
            with self.layout.drawer:
                brush = TypedState(self.state, PaintEffectState)
                self.panel = SegNetsPanel(
                    self._panel_state,
                    self.actions,
                    brush.name.brush_diameter_slider.value,
                    choose_volume=self.choose_data_volume,
                    v_if=(self._is_tool(PANEL_TOOL),),
                )
                editor_ui = SegmentEditorUI(v_if=(self._is_tool(SegmentEditorUI.__name__),))
                volume_ui = VolumePropertyUI(v_if=(self._is_tool(VolumePropertyUI.__name__),))
            with self.layout.toolbar:
                self._tool_button("SegNets", "mdi-brain", PANEL_TOOL)
                self._tool_button("Volume properties", "mdi-tune-variant", VolumePropertyUI.__name__)
                layout_button = LayoutButton(classes="mt-1", disabled=(f"!{self._viewer.name.is_volume_loaded}",))
                mpr_button = MprInteractionButton(classes="mt-1", disabled=(f"!{self._viewer.name.is_volume_loaded}",))
                self._tool_button("Segment Editor", "mdi-draw", SegmentEditorUI.__name__)
                SegmentEditorToolbarUI(editor_ui=editor_ui)
            with self.layout.undo_redo:
                SegmentEditorUndoRedoUI(editor_ui=editor_ui)
            with self.layout.content:
                self._layout_logic.layout_manager.initialize_layout_grid(self.layout)
        self._viewer.data.active_tool = PANEL_TOOL

        load_ui.on_load_volume.connect(self._on_upload)
        self._editor_logic.set_ui(editor_ui)
        self._volume_property_logic.set_ui(volume_ui)
        self._layout_logic.set_ui(layout_button)
        self._mpr_logic.set_ui(mpr_button)

    def _is_tool(self, tool: str) -> str:
        return f"{self._viewer.name.active_tool} === '{tool}'"

    def _tool_button(self, title: str, icon: str, tool: str) -> None:
        viewer = self._viewer

        def toggle() -> None:
            show = not viewer.data.is_drawer_visible or viewer.data.active_tool != tool
            viewer.data.is_drawer_visible = show
            viewer.data.active_tool = tool if show else None

        ControlButton(
            name=title,
            icon=icon,
            click=toggle,
            active=(self._is_tool(tool),),
            disabled=(f"!{viewer.name.is_volume_loaded} && '{tool}' !== '{PANEL_TOOL}'",),
            classes="mt-1",
        )

    def _use_flat_brush(self) -> None:
        """Annotations are per slice, so the brush paints in the viewed slice only (no sphere)."""
        TypedState(self.state, PaintEffectState).data.use_sphere_brush = False

    # --- data ------------------------------------------------------------------------------------
    def _on_client_connected(self, *_args) -> None:
        """Load ``--data`` once a browser is there (preloading before the views exist breaks Paint)."""
        if self._data_loaded or not self.data_volumes.paths:
            return
        self._data_loaded = True
        with self.state:
            try:
                self._show_volume(self.loader.load_path(*self.data_volumes.path("0")))
            except SegNetsError as error:  # the selector (a folder of several volumes) still offers the others
                self._panel_state.data.error = str(error)
                return
            self._panel_state.data.data_volume = "0" if self.data_volumes.choices else None
        self._fit_views_at_first_resize()

    def _fit_views_at_first_resize(self) -> None:
        """Fit every view to the volume again when the browser first sends its size.

        A browser that has just connected has not sized its views yet (they are 300 x 300 pixels): the volume
        fitted to that square and then stretched to the view's real shape showed the axial view cropped.
        """
        for view in self.slicer_app.view_manager.get_views():
            interactor = view.interactor()
            tag: list[int] = []

            def refit(_caller, _event, view=view, interactor=interactor, tag=tag) -> None:
                interactor.RemoveObserver(tag[0])
                view.fit_view_to_content()

            tag.append(interactor.AddObserver(vtkCommand.WindowResizeEvent, refit))

    async def _on_upload(self, files: list[dict]) -> None:
        self._replace_volume(lambda: self.loader.load_uploaded(files), None)

    def choose_data_volume(self, value: str) -> None:
        """Load the ``--data`` folder's volume the page's selector names (``value``: its choice's value) in place of
        the one shown, as an upload would."""
        self._replace_volume(lambda: self.loader.load_path(*self.data_volumes.path(value)), value)

    def _replace_volume(self, load, chosen: str | None) -> None:
        """Load a volume with ``load()`` in place of the one shown (its painting and result go with it, and the page
        says so); ``chosen``: the selector's value for a ``--data`` volume, None for an upload. A refused load (a job
        running, an unusable volume) leaves the scene and the selector as they were."""
        with self.state:
            self._panel_state.data.error = ""
            if self.actions.busy:
                self._panel_state.data.error = "SegNets is working on the current volume; wait or Cancel, then load."
                return
            shown, painted = self._panel_state.data.volume_name, self.actions.annotated_slice_count()
            try:
                node = load()
            except SegNetsError as error:
                self._panel_state.data.error = str(error)
                log.info("volume refused: %s", error)
                return
            self._show_volume(node)
            self._panel_state.data.data_volume = chosen
            if painted:  # the scene was cleared: say what went with it
                self._panel_state.data.message += (
                    f" The painting of {shown!r} ({painted} slice{'s' if painted > 1 else ''}) was discarded with it."
                )

    def _show_volume(self, volume_node) -> None:
        self.actions.on_volume_loaded(volume_node)  # adds the annotation segmentation first ...
        self._editor_logic.on_volume_changed(volume_node)  # ... so the Segment Editor edits it
        self._volume_property_logic.on_volume_changed(volume_node)
        self._viewer.data.is_volume_loaded = True
        self._viewer.data.is_drawer_visible = True
        self._viewer.data.active_tool = PANEL_TOOL
