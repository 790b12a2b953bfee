"""The panel's Models section and library folder: list, describe, import, export and delete models."""

from __future__ import annotations

import html

import qt
import slicer
from slicer.i18n import tr as _

from SegNetsPanel.logic import SETTINGS_LIBRARY


class ModelLibraryControls:
    """Methods of the SegNets widget (``self.ui``, ``self.logic``, ``self._parameterNode``) for the model library."""

    def _refreshModels(self, select: str | None = None) -> None:
        """Fill the model list from the library (newest version of each model first)."""
        combo = self.ui.modelComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        from SegNetsLib.card.versions import version_key

        entries = sorted(self.logic.listModels(), key=lambda e: version_key(e.version), reverse=True)
        for entry in sorted(entries, key=lambda e: e.id):  # stable: newest version of each id first
            combo.addItem(f"{entry.card.name}  ({entry.id} {entry.version})", f"{entry.id}@{entry.version}")
        wanted = select or self._parameterNode.modelReference
        combo.setCurrentIndex(max(combo.findData(wanted), 0) if entries else -1)
        combo.blockSignals(wasBlocked)
        self.onModelChanged()

    def onModelChanged(self, _index: int = 0) -> None:
        reference = self.ui.modelComboBox.currentData or ""
        if self._parameterNode:
            self._parameterNode.modelReference = reference
        self.ui.modelCardLabel.text = (
            html.escape(self.logic.describeModel(reference)).replace("\n", "<br>")  # the label shows rich text
            if reference
            else _("No model in the library. Import one in the Models section.")
        )
        self._updateButtons()

    def _connectLibraryPath(self) -> None:
        """Follow the library folder once its editing is finished: ``currentPathChanged`` fires on every
        keystroke, so typing only counts on Enter or leaving the field; the browse button counts at once."""
        pathEdit = self.ui.libraryPathLineEdit
        pathEdit.comboBox().lineEdit().connect("editingFinished()", self.onLibraryFolderEdited)
        pathEdit.connect("currentPathChanged(QString)", self.onLibraryPathChanged)

    def onLibraryPathChanged(self, path: str) -> None:
        if not self.ui.libraryPathLineEdit.comboBox().lineEdit().hasFocus():  # browsed, not typed
            self.onLibraryFolderChanged(path)

    def onLibraryFolderEdited(self) -> None:
        self.onLibraryFolderChanged(self.ui.libraryPathLineEdit.currentPath)

    def onLibraryFolderChanged(self, path: str) -> None:
        if (path or None) == self.logic.libraryFolderSetting():
            return
        qt.QSettings().setValue(SETTINGS_LIBRARY, path)
        self.logic.setLibraryFolder(path or None)
        if self.logic.ready:
            self._refreshModels()

    def onImportModel(self) -> None:
        # bare weights need an architecture and labels: `segnets models import` takes them (import_model_file)
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Import model"), "", _("Models (*.zip card.json)"))
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("The model could not be imported."), waitCursor=True):
            entry = self.logic.importModel(path)
            self._refreshModels(select=f"{entry.id}@{entry.version}")

    def onExportModel(self) -> None:
        reference = self._parameterNode.modelReference
        if not reference:
            return
        path = qt.QFileDialog.getSaveFileName(
            self.parent, _("Export model"), reference.replace("@", "-") + ".zip", "*.zip"
        )
        if path:
            with slicer.util.tryWithErrorDisplay(_("The model could not be exported."), waitCursor=True):
                self.logic.exportModel(reference, path)

    def onDeleteModel(self) -> None:
        reference = self._parameterNode.modelReference
        if reference and slicer.util.confirmYesNoDisplay(
            _("Delete model {ref} from the library?").format(ref=reference)
        ):
            with slicer.util.tryWithErrorDisplay(_("The model could not be deleted."), waitCursor=True):
                self.logic.deleteModel(reference)
                self._refreshModels()

    def onOpenLibrary(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The library folder could not be opened.")):
            folder = self.logic.libraryFolder()
            folder.mkdir(parents=True, exist_ok=True)
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(folder)))
