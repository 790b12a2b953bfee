"""The correction loop's buttons in SegNets Web: the round and its suggested slice, Go to slice, Back one round.

A mixin of :class:`SegNetsLib.web.actions.PanelActions`: it uses that class's ``data`` (the page state),
``logic``, ``busy``, ``volume_node``, ``scene``, ``_slicer_app`` and ``_replace_result``.
"""

from __future__ import annotations

from SegNetsLib.core.errors import SegNetsError


class RoundActions:
    """Round, suggested slice and stepping back, for the panel's actions."""

    def _show_round(self, outcome) -> None:
        """The round a Fine-tune made and the slice to paint next (a second Fine-tune continues the round)."""
        from SegNetsLib.app.correction import describe_round, node_ijk_to_ras

        suggestion = outcome.suggestion
        geometry = None if self.volume_node is None else node_ijk_to_ras(self.volume_node)
        self.data.round = int(outcome.round)
        self.data.suggested_slice = None if suggestion is None else int(suggestion.index)
        self.data.suggested_axis = 0 if suggestion is None else int(suggestion.axis)
        self.data.suggested_empty = False  # said of the previous suggestion; kept when a Fine-tune is cancelled
        self.data.round_text = describe_round(
            outcome.round, suggestion, outcome.model.card.provenance.seconds, geometry
        ).replace("then Update", "then Fine-tune again")

    def _forget_rounds(self) -> None:
        """No round on screen (a new volume): nothing to step back to or paint next."""
        self.data.round, self.data.suggested_slice, self.data.suggested_axis, self.data.round_text = 0, None, 0, ""
        self.data.suggested_empty = False

    def back_one_round(self) -> None:
        """Step back to the previous round: select its model and show its result again (nothing is deleted; the
        next Fine-tune continues from that round)."""
        from SegNetsLib.app.correction import step_back

        if self.busy or not self.data.model_key or self.data.round <= 1:
            return
        try:
            entry = step_back(self.logic.library, self.data.model_key)
            shown = None if entry is None else self.logic.round_segmentation(entry.reference, self.volume_node)
        except SegNetsError as error:
            self.data.error = str(error)
            return
        if entry is None:
            return
        newer, newer_round = self.data.model_key, self.data.round
        self.data.model_key = entry.reference
        self.data.round, self.data.suggested_slice = entry.round, None
        self.data.round_text = f"Back at round {entry.round} ({entry.reference}); Fine-tune continues from it."
        self.data.message = f"Back at round {entry.round}: {entry.reference} is selected again and its result is shown."
        if shown is not None:
            self._replace_result(shown)
        else:  # made before this page was opened: its result is not kept here
            still = f"; the result shown is still round {newer_round}'s ({newer})" if self.data.has_result else ""
            self.data.message = (
                f"Back at round {entry.round}: {entry.reference} is selected again, but its result was not made on this "
                f"page{still}. Segment shows {entry.reference}'s result."
            )

    def go_to_suggestion(self) -> None:
        """Move every slice view to the suggested slice (the views whose plane crosses it show it)."""
        from SegNetsLib.app.correction import node_ijk_to_ras, suggestion_ras
        from SegNetsLib.finetune.suggest import SliceSuggestion

        volume = self.volume_node
        if volume is None or self.data.suggested_slice is None:
            return
        suggestion = SliceSuggestion(self.data.suggested_axis, int(self.data.suggested_slice), 0.0, "")
        shape = tuple(reversed(volume.GetImageData().GetDimensions()))
        r, a, s = suggestion_ras(node_ijk_to_ras(volume), shape, suggestion)
        for view in self._slicer_app.view_manager.get_slice_views():
            node = self.scene.GetSingletonNode(view.get_singleton_tag(), "vtkMRMLSliceNode")
            if node is not None:
                node.JumpSliceByOffsetting(r, a, s)
