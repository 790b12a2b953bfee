"""Can this Slicer run SegNets, where its files are, and installing what it needs (torch through the PyTorch
extension, the rest from Resources/requirements.txt), asking the user first."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import slicer
from slicer.i18n import tr as _

MODULE_DIR = Path(__file__).resolve().parents[1]  # SegNets.py's folder (a clone's SegNets/, or the installed one)
TORCH_REQUIREMENT = ">=2.3"  # torch.amp.GradScaler (training) is new in torch 2.3
MIN_SLICER_VERSION = (5, 10)  # the first Slicer with Python 3.12; Slicer 5.8 ships Python 3.9
MIN_PYTHON_VERSION = (3, 10)  # what SegNetsLib needs (pyproject.toml: requires-python)


def unsupportedReason(slicerVersion: tuple[int, int], pythonVersion: tuple[int, int]) -> str | None:
    """Why this Slicer cannot run SegNets (one sentence), or None when it can."""
    slicerVersion, pythonVersion = tuple(slicerVersion[:2]), tuple(pythonVersion[:2])
    if slicerVersion >= MIN_SLICER_VERSION and pythonVersion >= MIN_PYTHON_VERSION:
        return None
    return _(
        "SegNets needs 3D Slicer {minimum} or newer (Python {python} or newer), but this is Slicer {slicer} "
        "with Python {running}; install a newer Slicer from download.slicer.org."
    ).format(
        minimum="{}.{}".format(*MIN_SLICER_VERSION),
        python="{}.{}".format(*MIN_PYTHON_VERSION),
        slicer="{}.{}".format(*slicerVersion),
        running="{}.{}".format(*pythonVersion),
    )


def runningVersions() -> tuple[tuple[int, int], tuple[int, int]]:
    """(Slicer major.minor, Python major.minor) of the running application."""
    return (int(slicer.app.majorVersion), int(slicer.app.minorVersion)), tuple(sys.version_info[:2])


def resourcesDir() -> Path:
    """Resources/ beside this file (installed extension) or at the repository root (a clone)."""
    installed = MODULE_DIR / "Resources"
    return installed if (installed / "UI" / "SegNets.ui").is_file() else MODULE_DIR.parent / "Resources"


def ensureSegNetsLibOnPath() -> None:
    """Make ``import SegNetsLib`` work from a clone (the repository root holds SegNetsLib/)."""
    if importlib.util.find_spec("SegNetsLib") is None:
        sys.path.insert(0, str(MODULE_DIR.parent))


def _missingRequirements(requirementsFile: Path) -> list[str]:
    """Requirement lines of ``requirementsFile`` that are not installed in Slicer's Python."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    missing = []
    for line in requirementsFile.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        try:
            if not requirement.specifier.contains(version(requirement.name), prereleases=True):
                missing.append(line)
        except PackageNotFoundError:
            missing.append(line)
    return missing


def ensureDependencies(askConfirmation: bool = True) -> bool:
    """Install what SegNets needs after asking; False if the user declined, an install failed, or when testing.

    torch comes from the PyTorch extension (it picks the CUDA build matching the driver); nothing is
    installed while Slicer runs tests. ``slicer.packaging.pip_ensure`` raises RuntimeError when the
    user declines and CalledProcessError when pip fails, and ``installTorch`` raises rather than
    returning None: each becomes one message, and the panel stays usable.
    """
    try:
        return _installDependencies(askConfirmation)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as error:
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
        logging.error("SegNets: the dependencies were not installed: %s", error)
        if not slicer.app.testingEnabled():
            slicer.util.errorDisplay(
                _("SegNets could not install what it needs ({error}). See the Python console for details.").format(
                    error=text
                )
            )
        return False


def _installDependencies(askConfirmation: bool) -> bool:
    testing = slicer.app.testingEnabled()
    try:
        import PyTorchUtils
    except ImportError:
        if not testing:
            slicer.util.errorDisplay(_("SegNets needs the PyTorch extension: install it from the Extensions Manager."))
        return False
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    if not torchLogic.torchInstalled():
        if testing or (
            askConfirmation
            and not slicer.util.confirmOkCancelDisplay(
                _("SegNets needs PyTorch. Install it now? This can take several minutes.")
            )
        ):
            return False
        if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT) is None:
            raise RuntimeError(_("PyTorch could not be installed; see the Python console for details."))
    requirementsFile = resourcesDir() / "requirements.txt"
    if importlib.util.find_spec("slicer.packaging") is not None:
        packaging = importlib.import_module("slicer.packaging")  # a plain import would make `slicer` local here

        if hasattr(packaging, "pip_ensure"):
            packaging.pip_ensure(
                packaging.load_requirements(str(requirementsFile)),
                requester="SegNets",
                prompt_install=askConfirmation,
            )
            return not _missingRequirements(requirementsFile)
    missing = _missingRequirements(requirementsFile)
    if missing:
        if testing or (
            askConfirmation
            and not slicer.util.confirmOkCancelDisplay(
                _("SegNets needs these Python packages: {packages}. Install them now?").format(
                    packages=", ".join(missing)
                )
            )
        ):
            return False
        slicer.util.pip_install(missing)
    return True
