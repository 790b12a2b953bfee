"""The panel's correction loop: Update after correction, Go to suggested slice, Back one round; what a job became
when the scene closed under it."""

from __future__ import annotations

import dataclasses

import slicer
from slicer.i18n import tr as _


class CorrectionRoundControls:
    """Methods of the SegNets widget (``self.ui``, ``self.logic``, ``self._round``) for correction rounds."""

    def onUpdateButton(self) -> None:
        """Continue the last round's model on every painted slice of the round's volume (whatever volume the selector
        shows now), and on the suggested one painted all background when the user checked that it holds none of the
        structure."""
        last, params = self._round, self._parameterNode
        empty = last.suggestion is not None and self.ui.suggestedEmptyCheckBox.checked
        reviewed = {last.suggestion.axis: [last.suggestion.index]} if empty else None
        with slicer.util.tryWithErrorDisplay(_("Update could not start."), waitCursor=True):
            volumeNode = self._roundVolume()
            if volumeNode is None:
                raise ValueError(_("The last round's volume is no longer in the scene; start a new Fine-tune."))
            self._start(
                self.logic.startFinetune(
                    volumeNode,
                    params.annotationSegmentation,
                    list(params.annotationSegmentIds),
                    f"{last.model.id}@{last.model.version}",
                    params.timeBudgetMinutes * 60.0,
                    params.device,
                    reviewed=reviewed,
                )
            )
            self.ui.suggestedEmptyCheckBox.checked = False  # a new round suggests a new slice

    def onSuggestedSliceButton(self) -> None:
        """Move the slice views to the slice the last result suggests painting next."""
        from SegNetsLib.app.correction import node_ijk_to_ras, suggestion_ras

        volumeNode = self._roundVolume()  # the suggestion's slice is of that volume, whatever the selector shows now
        if volumeNode is None or self._round.suggestion is None:
            return
        shape = tuple(reversed(volumeNode.GetImageData().GetDimensions()))
        local = suggestion_ras(node_ijk_to_ras(volumeNode), shape, self._round.suggestion)
        world = [0.0, 0.0, 0.0]  # the slice views take world RAS; IJK-to-RAS ignores the volume's parent transform
        volumeNode.TransformPointToWorld([float(value) for value in local], world)
        slicer.modules.markups.logic().JumpSlicesToLocation(*world, True)

    def onPreviousRoundButton(self) -> None:
        """Step back to the previous round: select its model and show its segmentation (nothing is deleted)."""
        from SegNetsLib.app.correction import step_back

        last = self._round
        with slicer.util.tryWithErrorDisplay(_("Could not step back."), waitCursor=True):
            entry = step_back(self.logic.core().library, f"{last.model.id}@{last.model.version}")
            if entry is None:
                return
            for reference, nodeId in self._roundNodes.items():
                node = slicer.mrmlScene.GetNodeByID(nodeId)
                if node is not None and node.GetDisplayNode() is not None:
                    node.GetDisplayNode().SetVisibility(reference == entry.reference)
            self._refreshModels(select=entry.reference)
            library = self.logic.core().library
            model = type(last.model)(
                entry.id, entry.version, library.find(entry.id, entry.version), library.card(entry.id, entry.version)
            )
            self._round = dataclasses.replace(last, model=model, round=entry.round, suggestion=None)
            if entry.reference in self._roundNodes:
                text = _("Back at round {n} ({reference}); Update continues from it.")
            else:  # made before Slicer started, or on another volume: no segmentation of it kept
                text = _(
                    "Back at round {n} ({reference}); its segmentation is not kept here (Segment shows "
                    "it). Update continues from it."
                )
            self.ui.roundLabel.text = text.format(n=entry.round, reference=entry.reference)
        self._updateButtons()

    def _roundVolume(self):
        """The volume the last round was made on, None when it left the scene."""
        node = getattr(self._round, "volume_node", None)
        return node if node is not None and node.GetScene() is not None else None

    def _sayDropped(self, job) -> None:
        """Say what became of ``job``, dropped because the scene closed: cancelled, or a Fine-tune that had saved its
        model already (listed, not shown: its volume is gone)."""
        from SegNetsLib.app.logic import is_in_library, where_saved

        self.ui.progressBar.value = 0
        text = _("The scene was closed while SegNets worked; the job was cancelled.")
        if job.context.get("kind") == "finetune" and job.state.value == "done":
            output, library = job.result(), self.logic.core().library
            if output.kept == "fine-tuned" and is_in_library(output.entry.path, library):
                self._refreshModels()
            text = _("The scene was closed before the result was shown; ") + where_saved(output, library)
        self.ui.stageLabel.text = text

    def _showFinetuneResult(self, result) -> None:
        if result is None:
            return
        from SegNetsLib.app.correction import describe_round, node_ijk_to_ras

        reference = f"{result.model.id}@{result.model.version}"
        library = self.logic.core().library
        if result.in_library(library):
            self._refreshModels(select=reference)
        self.ui.stageLabel.text = (
            result.summary(library)
            + " "
            + _("Segmentation {name}.").format(name=result.segmentation.segmentation_node.GetName())
        )
        if result.kept == "untrained":  # no model was saved: no round to continue, step back from or paint for
            self._round = None
            self.ui.roundLabel.text = ""
            return
        self._round = result
        self._roundNodes[reference] = result.segmentation.segmentation_node.GetID()
        volumeNode = self._roundVolume()
        geometry = None if volumeNode is None else node_ijk_to_ras(volumeNode)
        self.ui.roundLabel.text = describe_round(
            result.round, result.suggestion, result.model.card.provenance.seconds, geometry
        )
        self.ui.suggestedSliceButton.text = (
            _("Go to slice {index}").format(index=result.suggestion.index)
            if result.suggestion is not None
            else _("Go to suggested slice")
        )
