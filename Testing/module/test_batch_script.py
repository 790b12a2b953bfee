"""SegNets/Scripts/segnets_batch.py under plain Python with slicer-core: real files in, .seg.nrrd out (inputs and
library: conftest.py; Ctrl-C and SIGTERM: test_batch_stops.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("slicer")
slicerio = pytest.importorskip("slicerio")


SCRIPT = Path(__file__).resolve().parents[2] / "SegNets" / "Scripts" / "segnets_batch.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("segnets_batch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_folder_batch_writes_segmentations_and_summary_and_fails_on_a_broken_file(inputs, library, tmp_path, capsys):
    from SegNetsLib.imageio.volumes import read_volume

    output = tmp_path / "out"
    code = _load_script().main(
        [
            "--input",
            str(inputs),
            "--model",
            "all-liver",
            "--output",
            str(output),
            "--device",
            "cpu",
            "--roi",
            "off",
            "--library",
            str(library.root),
        ]
    )
    assert code == 1, "a broken input makes the batch fail, after the others were segmented"
    summary = json.loads((output / "summary.json").read_text())
    assert [Path(r["input"]).name for r in summary["succeeded"]] == ["ct_a.nii.gz", "ct_b.nrrd"]
    assert [Path(f["input"]).name for f in summary["failed"]] == ["broken.nii.gz"]
    assert "broken.nii.gz" in capsys.readouterr().err
    for name, shape_kji in (("ct_a", (16, 32, 32)), ("ct_b", (12, 24, 40))):
        segmentation = slicerio.read_segmentation(str(output / f"{name}.seg.nrrd"))  # an independent reader
        segment = slicerio.segment_from_name(segmentation, "Liver")
        assert segment["terminology"]["type"][2] == "Liver"
        mask = slicerio.extract_segments(segmentation, [("Liver", 1)])["voxels"]
        assert mask.transpose(2, 1, 0).shape == shape_kji  # slicerio is [i, j, k]
        assert mask.all(), "the biased model labels every voxel liver"
        source = read_volume(next(inputs.glob(f"{name}.*")))
        np.testing.assert_allclose(np.asarray(segmentation["ijkToLPS"]), source.ijk_to_lps(), atol=1e-4)
    assert sorted(p.name for p in output.iterdir()) == ["ct_a.seg.nrrd", "ct_b.seg.nrrd", "summary.json"]


@pytest.mark.slow
def test_the_script_runs_as_its_own_process_on_one_file(inputs, library, tmp_path):
    output = tmp_path / "single"
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--input",
            str(inputs / "ct_b.nrrd"),
            "--model",
            str(library.find("all-liver")),
            "--output",
            str(output),
            "--device",
            "cpu",
            "--roi",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads((output / "summary.json").read_text())["failed"] == []
    assert (output / "ct_b.seg.nrrd").is_file()


def test_bad_arguments_exit_2_without_output(tmp_path, capsys):
    batch = _load_script()
    assert batch.main(["--input", str(tmp_path / "missing"), "--model", "x", "--output", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_inputs_that_would_share_an_output_file_exit_2_before_any_work(tmp_path, capsys):
    """ct.nii.gz and ct.nrrd both map to ct.seg.nrrd: the second used to overwrite the first, both reported done."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    for name in ("ct.nii.gz", "CT.nrrd", "other.mha"):
        (folder / name).write_bytes(b"")  # never read: the clash is found from the names
    arguments = ["--input", str(folder), "--model", "x", "--output", str(tmp_path / "o")]
    assert _load_script().main(arguments) == 2
    error = capsys.readouterr().err
    assert "CT.nrrd and ct.nii.gz would both be written as" in error, error
    assert not (tmp_path / "o").exists()


def test_an_error_outside_the_per_file_loop_exits_1_in_one_line(inputs, library, tmp_path, capsys):
    """Slicer --python-script keeps running after an uncaught error: main reports it and returns 1."""
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    arguments = ["--input", str(inputs / "broken.nii.gz"), "--model", "all-liver", "--output", str(blocker)]
    code = _load_script().main([*arguments, "--library", str(library.root)])
    assert code == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("segnets_batch: error:")]
    assert len(errors) == 1, errors  # the output folder, found before any volume is loaded or segmented
    assert errors[0] == f"segnets_batch: error: {blocker} is a file, not a folder; give another output folder."
    assert " -> " not in captured.out, "no volume is segmented into a folder that cannot be made"
    assert blocker.read_text() == "a file where the output folder should be"


def test_the_script_ends_its_process_with_the_code(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--input", str(tmp_path / "missing"), "--model", "x", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 2 and "no such file or folder" in completed.stderr


def test_hidden_files_of_a_folder_are_no_input(tmp_path):
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    (tmp_path / ".ct.nii.gz.k2j4d8aa.partial.nii.gz").write_bytes(b"")
    (tmp_path / "._ct.nrrd").write_bytes(b"")
    assert _load_script().input_files(tmp_path) == [tmp_path / "ct.nii.gz"]


def test_a_model_written_as_a_path_is_that_path_never_a_library_model(inputs, library, tmp_path, monkeypatch, capsys):
    """'./all-liver' names a folder that is not there: the library's all-liver must not stand in for it; '~/m' is the
    home folder's m (the shell leaves a tilde after '=' and in quotes)."""
    import shutil

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    shutil.copytree(library.find("all-liver"), tmp_path / "home" / "m")
    arguments = ["--input", str(inputs / "ct_a.nii.gz"), "--device", "cpu", "--roi", "off"]
    arguments += ["--library", str(library.root)]
    code = _load_script().main([*arguments, "--model", "./all-liver", "--output", str(tmp_path / "out")])
    assert code == 1 and "./all-liver: no such model folder or .zip." in capsys.readouterr().err
    assert not (tmp_path / "out" / "ct_a.seg.nrrd").exists()
    assert _load_script().main([*arguments, "--model", "~/m", "--output", str(tmp_path / "home-out")]) == 0
    assert (tmp_path / "home-out" / "ct_a.seg.nrrd").exists()


def test_a_segmentation_given_as_input_is_refused_before_any_work(inputs, tmp_path, capsys):
    """A .seg.nrrd named by mistake (the annotation, not its image) used to be segmented as an image, exit 0."""
    annotation = tmp_path / "ct_a.seg.nrrd"
    annotation.write_bytes(b"NRRD0004\n")  # never read: refused from its name
    arguments = ["--input", str(annotation), "--model", "x", "--output", str(tmp_path / "o")]
    assert _load_script().main(arguments) == 2
    assert "ct_a.seg.nrrd: a segmentation, not an image volume" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_existing_results_are_never_replaced_without_overwrite(inputs, library, tmp_path, capsys):
    """Output folder = input folder: ct_a.seg.nrrd beside ct_a.nii.gz (the user's painting) was silently replaced."""
    import shutil

    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(inputs / "ct_a.nii.gz", folder / "ct_a.nii.gz")
    (folder / "ct_a.seg.nrrd").write_bytes(b"the user's own segmentation")
    arguments = ["--input", str(folder), "--model", "all-liver", "--output", str(folder), "--device", "cpu"]
    arguments += ["--roi", "off", "--library", str(library.root)]
    assert _load_script().main(arguments) == 2
    assert f"{folder / 'ct_a.seg.nrrd'} already exists" in capsys.readouterr().err
    assert (folder / "ct_a.seg.nrrd").read_bytes() == b"the user's own segmentation"
    assert sorted(p.name for p in folder.iterdir()) == ["ct_a.nii.gz", "ct_a.seg.nrrd"]
    assert _load_script().main([*arguments, "--overwrite"]) == 0
    assert slicerio.segment_names(slicerio.read_segmentation(str(folder / "ct_a.seg.nrrd"))) == ["Liver"]


def test_an_earlier_runs_summary_is_never_replaced_without_overwrite(inputs, library, tmp_path, capsys):
    """A second batch into the same folder (other volumes, no .seg.nrrd in the way) replaced the first one's
    summary.json, its only record of what was segmented and what failed."""
    output = tmp_path / "out"
    output.mkdir()
    (output / "summary.json").write_text("an earlier run's summary")
    arguments = ["--input", str(inputs / "ct_a.nii.gz"), "--model", "all-liver", "--output", str(output)]
    arguments += ["--device", "cpu", "--roi", "off", "--library", str(library.root)]
    assert _load_script().main(arguments) == 2
    assert f"{output / 'summary.json'} already exists" in capsys.readouterr().err
    assert sorted(p.name for p in output.iterdir()) == ["summary.json"]
    assert (output / "summary.json").read_text() == "an earlier run's summary"


@pytest.mark.parametrize("damage", ["missing", "card", "zip"])
def test_an_unusable_model_is_one_error_before_any_volume(inputs, library, tmp_path, capsys, damage):
    """A missing model, a damaged card.json or a damaged .zip failed every volume in turn, each loaded first, N
    identical errors."""
    import shutil

    model = "no-such-model"
    if damage == "card":
        model = str(tmp_path / "damaged")
        shutil.copytree(library.find("all-liver"), model)
        (tmp_path / "damaged" / "card.json").write_text("{")
    if damage == "zip":
        model = str(tmp_path / "damaged.zip")
        (tmp_path / "damaged.zip").write_bytes(b"not a zip")
    arguments = ["--input", str(inputs), "--model", model, "--output", str(tmp_path / "out"), "--device", "cpu"]
    assert _load_script().main([*arguments, "--library", str(library.root)]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("segnets_batch: error:")]
    assert len(errors) == 1, errors
    said = {"missing": "not in the library", "card": "card.json: not valid JSON", "zip": "not a readable zip archive"}
    assert said[damage] in errors[0]
    assert " -> " not in captured.out and not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_made_is_one_sentence(inputs, library, tmp_path, capsys):
    """A file where a parent folder goes printed Python's 'NotADirectoryError: [Errno 20] Not a directory: ...'."""
    (tmp_path / "a-file").write_text("not a folder")
    output = tmp_path / "a-file" / "out"
    arguments = ["--input", str(inputs / "ct_a.nii.gz"), "--model", "all-liver", "--output", str(output)]
    assert _load_script().main([*arguments, "--library", str(library.root)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("segnets_batch: error:")]
    assert errors == [
        f"segnets_batch: error: {output}: the folder cannot be made or written to (Not a directory); "
        "give another output folder."
    ]


def test_a_failed_volume_is_named_once_in_its_error_line(inputs, library, tmp_path, capsys):
    """The line read 'error: <path>: <path>: not a readable image file ...': the message already names the file."""
    broken = inputs / "broken.nii.gz"
    arguments = ["--input", str(broken), "--model", "all-liver", "--output", str(tmp_path / "out")]
    assert _load_script().main([*arguments, "--library", str(library.root)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("segnets_batch: error:")]
    assert len(errors) == 1 and errors[0].count(str(broken)) == 1, errors
    assert errors[0].startswith(f"segnets_batch: error: {broken}: not a readable image file"), errors


def test_progress_lines_name_a_stage(inputs, library, tmp_path, capsys):
    """The first progress line of each volume read '  ct_b.nrrd:  (0%)': the job's stage before it starts is blank."""
    import re

    arguments = ["--input", str(inputs / "ct_b.nrrd"), "--model", "all-liver", "--output", str(tmp_path / "out")]
    assert _load_script().main([*arguments, "--device", "cpu", "--roi", "off", "--library", str(library.root)]) == 0
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert progress and all(re.fullmatch(r"  ct_b\.nrrd: \w[\w ]* \(\d+%\)", line) for line in progress), progress


def test_each_volume_leaves_the_scene_as_it_found_it(mrml, inputs, library, tmp_path):
    """Removed volumes and segmentations left their display and storage nodes and their subject hierarchy items
    (3 nodes and 2 items a volume; slicer-core then logged 'DataNodeCache inconsistency found' errors)."""
    import slicer
    import vtk

    from SegNetsLib.app.logic import SegmentationLogic

    batch = _load_script()
    args = batch.parse_args(
        ["--input", "x", "--model", "m", "--output", str(tmp_path), "--device", "cpu", "--roi", "off"]
    )
    logic = SegmentationLogic(mrml.scene, library)

    def scene_state() -> tuple[int, int]:
        hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml.scene)
        items = vtk.vtkIdList()
        hierarchy.GetItemChildren(hierarchy.GetSceneItemID(), items, True)
        return mrml.scene.GetNumberOfNodes(), items.GetNumberOfIds()

    before = scene_state()
    for name in ("ct_a.nii.gz", "ct_b.nrrd"):
        target = tmp_path / f"{name.split('.')[0]}.seg.nrrd"
        batch.segment_file(logic, mrml.volumes_logic, inputs / name, target, library.find("all-liver"), args)
        assert target.is_file()
    assert scene_state() == before


def test_an_unknown_device_is_a_bad_argument(inputs, tmp_path, capsys):
    """'--device gpu' loaded and failed every volume in turn ('device 'gpu' is unknown'), exit 1."""
    arguments = ["--input", str(inputs), "--model", "x", "--output", str(tmp_path / "o"), "--device", "gpu"]
    assert _load_script().main(arguments) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == ["segnets_batch: error: device 'gpu' is unknown; choose one of auto, cpu, cuda, cuda:N, mps."]
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_gpu_this_machine_lacks_is_refused_before_any_volume(inputs, library, tmp_path, capsys):
    """'--device cuda:0' without a CUDA GPU loaded and failed every volume in turn, then wrote summary.json."""
    output = tmp_path / "out"
    arguments = ["--input", str(inputs), "--model", "all-liver", "--output", str(output), "--device", "CUDA:0"]
    assert _load_script().main([*arguments, "--library", str(library.root)]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert errors == ["segnets_batch: error: device 'CUDA:0' is not available: this machine has no usable CUDA GPU."]
    assert " -> " not in captured.out and not output.exists()
