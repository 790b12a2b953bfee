"""The SegNets panel: model, Segment/Cancel with progress, annotation tools, Fine-tune, download.

Only layout lives here; every button calls a method of :class:`SegNetsLib.web.actions.PanelActions`.
Elements carry ``id`` attributes (``segnets-*``), each on one element of the page, so people and tests can find them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from trame.widgets import html
from trame.widgets.vuetify3 import (
    Template,
    VAlert,
    VBtn,
    VCard,
    VCardText,
    VCardTitle,
    VCheckbox,
    VDivider,
    VLabel,
    VProgressLinear,
    VSelect,
    VSlider,
    VSparkline,
    VTextField,
)
from trame_server.utils.typed_state import TypedState
from trame_slicer.app.ui import FlexContainer

from SegNetsLib.web.state import CLICK_FIELDS, PanelState

DOWNLOAD_NAME = "segnets_result.seg.nrrd"


class PanelActions(Protocol):
    def refresh_models(self) -> None: ...
    def segment(self, fields: dict | None = None) -> None: ...
    def finetune(self, fields: dict | None = None) -> None: ...
    def cancel(self) -> None: ...
    def paint(self) -> None: ...
    def erase(self) -> None: ...
    def stop_editing(self) -> None: ...
    def undo(self) -> None: ...
    def redo(self) -> None: ...
    def download_result(self) -> object: ...
    def go_to_suggestion(self) -> None: ...
    def back_one_round(self) -> None: ...


class SegNetsPanel(FlexContainer):
    """The drawer panel; ``typed_state`` holds a :class:`PanelState`; ``choose_volume`` loads the ``--data`` volume
    of a choice's value (the selector shown when ``--data`` holds several)."""

    def __init__(
        self,
        typed_state: TypedState[PanelState],
        actions: PanelActions,
        brush_diameter_state: str,
        choose_volume: Callable[[str], None],
        **kwargs,
    ) -> None:
        super().__init__(fill_height=True, style="overflow-y: auto;", **kwargs)
        self._name = typed_state.name
        self._actions = actions
        self._choose_volume = choose_volume
        self._brush_diameter_state = brush_diameter_state
        with self:
            self._build_alerts()
            with VCard(variant="flat"):
                VCardTitle("SegNets")
                with VCardText():
                    self._build_model_inputs()
                    self._build_segment()
            VDivider()
            with VCard(variant="flat"):
                VCardTitle("Annotate a few slices", classes="text-subtitle-1")
                with VCardText():
                    self._build_annotation_tools()
            VDivider()
            with VCard(variant="flat"):
                VCardTitle("Fine-tune", classes="text-subtitle-1")
                with VCardText():
                    self._build_finetune()

    def _with_fields(self, action) -> tuple:
        """A click that sends the fields of :data:`CLICK_FIELDS` with it, as the page shows them."""
        names = [getattr(self._name, key) for key in CLICK_FIELDS]
        return (action, "[{%s}]" % ", ".join(f"{name}: {name}" for name in names))

    def _build_alerts(self) -> None:
        name = self._name
        VAlert(
            id="segnets-error",
            v_if=(name.error,),
            type="error",
            density="compact",
            style="flex: none;",
            closable=True,
            text=(name.error,),
            classes="ma-2",
            click_close=f"{name.error} = ''",
        )
        VAlert(
            id="segnets-message",
            v_if=(f"{name.message} && !{name.error}",),
            type="info",
            variant="tonal",
            density="compact",
            style="flex: none;",
            text=(name.message,),
            classes="ma-2",
        )

    def _build_model_inputs(self) -> None:
        name = self._name
        html.Div(
            "Volume: {{ %s || 'none - open a file (top left)' }}" % name.volume_name,
            id="segnets-volume",
            classes="text-body-2 mb-2",
        )
        VSelect(  # shows the volume loaded; a pick is sent to the server, which loads it or refuses (then it stays)
            id="segnets-data-volume",
            v_if=(f"{name.data_volumes}.length > 1",),
            label="Volume of the --data folder",
            model_value=(name.data_volume,),
            update_modelValue=(self._choose_volume, "[$event]"),
            items=(name.data_volumes,),
            item_title="title",
            item_value="value",
            density="compact",
            hide_details=True,
            classes="mb-3",
            disabled=(name.busy,),
        )
        with html.Div(classes="d-flex align-center"):
            VSelect(
                id="segnets-model",
                label="Model",
                v_model=(name.model_key,),
                items=(name.models,),
                item_title="title",
                item_value="value",
                density="compact",
                hide_details=True,
                disabled=(name.busy,),
            )
            VBtn(
                icon="mdi-refresh",
                variant="text",
                density="compact",
                click=self._actions.refresh_models,
                classes="ml-1",
                disabled=(name.busy,),
            )
        html.Div("{{ %s }}" % name.model_card_text, classes="text-caption my-1", style="white-space: pre-line;")
        with html.Div(classes="d-flex"):
            VSelect(
                label="RoI",
                v_model=(name.roi_mode,),
                items=("['auto', 'off']",),
                density="compact",
                hide_details=True,
                classes="mr-2",
                disabled=(name.busy,),
            )
            VSelect(
                label="Device",
                v_model=(name.device,),
                items=(name.devices,),
                item_title="title",
                item_value="value",
                density="compact",
                hide_details=True,
                disabled=(name.busy,),
            )

    def _build_segment(self) -> None:
        name = self._name
        with html.Div(classes="d-flex mt-3"):
            VBtn(
                "Segment",
                id="segnets-segment",
                v_if=(f"!{name.busy}",),
                color="primary",
                prepend_icon="mdi-play",
                click=self._with_fields(self._actions.segment),
                disabled=(f"!{name.volume_name} || !{name.model_key}",),
            )
            VBtn(
                "Cancel",
                id="segnets-cancel",
                v_if=(name.busy,),
                color="warning",
                prepend_icon="mdi-stop",
                click=self._actions.cancel,
                disabled=(name.cancelling,),
            )
            VBtn(
                "Download",
                id="segnets-download",
                title="Download the result as a .seg.nrrd file (opens in 3D Slicer)",
                classes="ml-2",
                variant="tonal",
                prepend_icon="mdi-download",
                disabled=(f"!{name.has_result} || {name.busy}",),
                click=(
                    f"utils.download('{DOWNLOAD_NAME}', trigger('"
                    f"{self.server.controller.trigger_name(self._actions.download_result)}'), "
                    "'application/octet-stream')"
                ),
            )
        VProgressLinear(
            id="segnets-progress",
            v_if=(name.busy,),
            model_value=(f"{name.progress} * 100",),
            height=8,
            color="primary",
            classes="mt-3",
        )
        html.Div("{{ %s }}" % name.stage, v_if=(name.busy,), id="segnets-stage", classes="text-caption")

    def _build_annotation_tools(self) -> None:
        name = self._name
        html.Div(
            "Paint the structures you want on a few slices (each painted slice counts as fully annotated: "
            "what you leave unpainted there is background).",
            classes="text-caption mb-2",
        )
        with html.Div(classes="d-flex flex-wrap"):
            for label, icon, element_id, action in (
                ("Paint", "mdi-brush", "segnets-paint", self._actions.paint),
                ("Erase", "mdi-eraser", "segnets-erase", self._actions.erase),
                ("Stop", "mdi-cursor-default", "segnets-no-tool", self._actions.stop_editing),
                ("Undo", "mdi-undo", "segnets-undo", self._actions.undo),
                ("Redo", "mdi-redo", "segnets-redo", self._actions.redo),
            ):
                VBtn(
                    label,
                    id=element_id,
                    prepend_icon=icon,
                    size="small",
                    variant="tonal",
                    classes="mr-1 mb-1",
                    click=action,
                    disabled=(f"!{name.volume_name} || {name.busy}",),
                )
        # A slider's label="..." gets the id of its input (given or generated): ids repeated on the page. The label
        # is given as a slot instead, and the page's id is on a wrapper.
        with (
            html.Div(id="segnets-brush"),
            VSlider(
                v_model=(self._brush_diameter_state,),
                min=1,
                max=30,
                step=1,
                thumb_label=True,
                density="compact",
                hide_details=True,
            ),
            Template(v_slot_label=True),
        ):
            VLabel("Brush", classes="v-slider__label")
        html.Div("Annotated slices: {{ %s }}" % name.annotated_slices, id="segnets-annotated", classes="text-caption")

    def _build_finetune(self) -> None:
        name = self._name
        with html.Div(classes="d-flex align-center"):
            VTextField(
                id="segnets-time-budget",
                label="Time budget (s)",
                v_model_number=(name.time_budget_s,),
                type="number",
                density="compact",
                hide_details=True,
                style="max-width: 140px;",
                disabled=(name.busy,),
            )
            VBtn(
                "Fine-tune",
                id="segnets-finetune",
                v_if=(f"!{name.busy}",),
                color="secondary",
                prepend_icon="mdi-school",
                classes="ml-2",
                click=self._with_fields(self._actions.finetune),
                disabled=(f"!{name.model_key} || {name.annotated_slices} < 1",),
            )
        VSparkline(
            v_if=(f"{name.losses}.length > 1",),
            model_value=(name.losses,),
            line_width=2,
            height=60,
            smooth=True,
            color="secondary",
            classes="mt-2",
        )
        html.Div(
            "{{ %s > 0 ? 'Iteration ' + %s + ', loss ' + (%s.length ? %s[%s.length - 1].toFixed(4) : '-') : '' }}"
            "{{ %s !== null ? ', validation Dice ' + %s.toFixed(3) : '' }}"
            % (
                name.iteration,
                name.iteration,
                name.losses,
                name.losses,
                name.losses,
                name.validation_dice,
                name.validation_dice,
            ),
            id="segnets-finetune-status",
            classes="text-caption",
        )
        with html.Div(v_if=(f"{name.round} > 0",), classes="d-flex align-center mt-1"):
            html.Div("{{ %s }}" % name.round_text, id="segnets-round", classes="text-caption")
            VBtn(
                "Go to slice {{ %s }}" % name.suggested_slice,
                id="segnets-go-to-suggestion",
                v_if=(f"{name.suggested_slice} !== null",),
                size="small",
                variant="tonal",
                prepend_icon="mdi-target",
                classes="ml-2",
                click=self._actions.go_to_suggestion,
            )
            VCheckbox(
                v_model=(name.suggested_empty,),
                label="Slice is empty",
                id="segnets-suggested-empty",
                v_if=(f"{name.suggested_slice} !== null",),
                disabled=(name.busy,),
                density="compact",
                hide_details=True,
                title="Check when the suggested slice holds none of the structure: the next Fine-tune learns it "
                "as painted all background (an unpainted slice is otherwise never taken as empty).",
                classes="ml-2 flex-grow-0",
            )
            VBtn(
                "Back one round",
                id="segnets-back-round",
                v_if=(f"{name.round} > 1",),
                disabled=(name.busy,),
                size="small",
                variant="text",
                prepend_icon="mdi-undo-variant",
                classes="ml-1",
                click=self._actions.back_one_round,
            )
