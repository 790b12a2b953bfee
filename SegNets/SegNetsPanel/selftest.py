"""The module's self-test (Reload and Test, ctest): the bodies of ``SegNetsLib.app.selftest`` on the CPU."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from SegNetsPanel.dependencies import MODULE_DIR, runningVersions, unsupportedReason
from SegNetsPanel.logic import SegNetsLogic


class SegNetsTest(ScriptedLoadableModuleTest):
    """Runs the bodies in ``SegNetsLib.app.selftest`` (the same ones pytest runs under slicer-core) on the CPU."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_SegmentAndFinetune()

    @staticmethod
    def skipReason() -> str | None:
        """Why the self-test cannot run here (an unsupported Slicer, a missing dependency), or None."""
        reason = unsupportedReason(*runningVersions())
        if reason:
            return reason
        if not SegNetsLogic().ready:
            return "PyTorch or a package of requirements.txt is missing; nothing is installed during tests."
        return None

    def test_SegmentAndFinetune(self) -> None:
        reason = self.skipReason()
        if reason:  # Reload and Test shows a raised SkipTest as an error: report and return
            logging.warning("SegNets self-test skipped: %s", reason)
            self.delayDisplay(_("SegNets self-test skipped: {reason}").format(reason=reason))
            return
        from SegNetsLib.app import selftest

        dataDir = selftest.find_test_data(MODULE_DIR)
        with tempfile.TemporaryDirectory(prefix="segnets-selftest-") as folder:
            report = selftest.run_all(slicer.mrmlScene, Path(folder), dataDir)
        for line in report.lines():
            logging.info(line)
        self.assertTrue(report.annotation_unchanged, "the annotation segmentation was modified")
        self.assertGreaterEqual(report.finetuned_dice, selftest.MIN_FINETUNED_DICE)
        self.delayDisplay(_("SegNets self-test passed"))
