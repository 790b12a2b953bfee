"""The extension's CMake installs SegNets.py and its SegNetsPanel package, the whole SegNetsLib package (subfolders and data) and the resources.

Slicer's SDK cannot be built here, so a stand-in SlicerConfig.cmake gives the variables and the two macros the
extension calls, each installing what it is handed the way Slicer's and CTK's macros do (scripts keep their path
relative to the source folder). Configuring and installing the real CMakeLists.txt then shows which files reach
the installed module folder.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES_DIR = "lib/Slicer-5.10/qt-scripted-modules"

STAND_IN_SDK = f"""
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "{MODULES_DIR}")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "{MODULES_DIR}")
set(Slicer_USE_FILE "${{CMAKE_CURRENT_LIST_DIR}}/empty.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${{CMAKE_CURRENT_LIST_DIR}}/empty.cmake")
set(Slicer_EXTENSION_CPACK "${{CMAKE_CURRENT_LIST_DIR}}/empty.cmake")
set(BUILD_TESTING OFF)

function(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(ARG "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${{ARGN}})
  foreach(script ${{ARG_SCRIPTS}})
    get_filename_component(folder "${{script}}" DIRECTORY)
    install(FILES "${{CMAKE_CURRENT_SOURCE_DIR}}/${{script}}" DESTINATION "{MODULES_DIR}/${{folder}}")
  endforeach()
endfunction()

function(ctkMacroCompilePythonScript)
  cmake_parse_arguments(ARG "NO_INSTALL_SUBDIR" "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS" ${{ARGN}})
  foreach(script ${{ARG_SCRIPTS}})
    get_filename_component(folder "${{script}}" DIRECTORY)
    install(FILES "${{ARG_SOURCE_DIR}}/${{script}}" DESTINATION "${{ARG_INSTALL_DIR}}/${{folder}}")
  endforeach()
endfunction()
"""


def test_install_holds_the_module_the_whole_library_and_its_resources(tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    (sdk / "SlicerConfig.cmake").write_text(STAND_IN_SDK)
    (sdk / "empty.cmake").write_text("")
    build, prefix = tmp_path / "build", tmp_path / "install"
    run = dict(capture_output=True, text=True, check=True)
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), f"-DSlicer_DIR={sdk}"], **run)
    subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix)], **run)

    installed = prefix / MODULES_DIR
    expected = {p.relative_to(ROOT) for p in (ROOT / "SegNetsLib").rglob("*") if p.suffix in (".py", ".json")}
    expected = {p for p in expected if "__pycache__" not in p.parts}
    found = {p.relative_to(installed) for p in (installed / "SegNetsLib").rglob("*") if p.is_file()}
    assert expected - found == set(), "library files missing from the installed module"
    assert Path("SegNetsLib/card/card.schema.json") in found
    assert (installed / "SegNets.py").is_file()
    panel = {p.name for p in (ROOT / "SegNets" / "SegNetsPanel").glob("*.py")}
    assert panel and panel == {p.name for p in (installed / "SegNetsPanel").glob("*.py")}, "SegNetsPanel incomplete"
    assert (installed / "SegNetsScripts" / "segnets_batch.py").is_file()
    for resource in ("Resources/UI/SegNets.ui", "Resources/Icons/SegNets.png", "Resources/requirements.txt"):
        assert (installed / resource).is_file(), resource
    assert (installed / "Resources" / "Testing" / "ts_ct_sm" / "image.nii.gz").is_file()
