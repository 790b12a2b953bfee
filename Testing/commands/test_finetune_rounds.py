"""``segnets finetune`` twice: round 1 from scratch saved under a name, then the correction round continued
from that name (``--model``) with one more painted slice, naming the slice to paint next."""

from __future__ import annotations

import re

import numpy as np

from SegNetsLib.cli import main
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.segmentations import read_labelmap
from SegNetsLib.imageio.volumes import write_volume
from SegNetsLib.models.library import ModelLibrary


def test_a_second_run_from_the_saved_model_is_the_next_round(tmp_path, capsys, model_library):
    rng = np.random.default_rng(0)
    z, y, x = np.indices((16, 40, 40))
    truth = (((z - 8) / 6) ** 2 + ((y - 20) / 12) ** 2 + ((x - 20) / 10) ** 2 <= 1).astype(np.uint8)
    image = Volume((100.0 * truth + rng.normal(0, 10, truth.shape)).astype(np.float32), spacing=(2.0, 2.0, 2.0))
    write_volume(image, tmp_path / "image.nii.gz")
    first = np.zeros_like(truth)
    first[[4, 12]] = truth[[4, 12]]
    write_volume(image.with_array(first), tmp_path / "round1.nii.gz")
    common = ["finetune", "--input", str(tmp_path / "image.nii.gz"), "--iterations", "3", "--device", "cpu"]

    assert main([*common, "--annotations", str(tmp_path / "round1.nii.gz"), "--save-model", "r1-ts_phantom",
                 "--output", str(tmp_path / "round1.seg.nrrd")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "round 1" in err and "model -> library r1-ts-phantom@" in err
    suggested = re.search(r"suggested next slice: axial slice (\d+) along axis 0", err)
    assert suggested is not None, err

    second = first.copy()
    second[8] = truth[8]
    write_volume(image.with_array(second), tmp_path / "round2.nii.gz")
    assert main([*common, "--annotations", str(tmp_path / "round2.nii.gz"), "--model", "r1-ts_phantom",
                 "--previous", str(tmp_path / "round1.seg.nrrd"), "--output", str(tmp_path / "round2.seg.nrrd")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert re.search(r"round 2 \([0-9.]+ s\), slices added: axis 0: 8", err), err
    library = ModelLibrary(model_library)
    versions = library.versions("r1-ts-phantom")
    assert len(versions) == 2  # every round kept
    assert library.card("r1-ts-phantom", versions[-1]).provenance.round == 2
    out1 = read_labelmap(tmp_path / "round1.seg.nrrd").array
    out2 = read_labelmap(tmp_path / "round2.seg.nrrd").array
    assert np.array_equal(out1[:5], out2[:5]) and np.array_equal(out1[12:], out2[12:])  # changed only near slice 8
    assert np.array_equal(out2[8] > 0, truth[8] > 0)

    # round 3 corrects slice 12, painted in round 1 (part erased), and adds none: the output and the card say so
    third = second.copy()
    third[12, :, 20:] = 0
    write_volume(image.with_array(third), tmp_path / "round3.nii.gz")
    assert main([*common, "--annotations", str(tmp_path / "round3.nii.gz"), "--model", "r1-ts_phantom",
                 "--previous", str(tmp_path / "round2.seg.nrrd")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert re.search(r"round 3 \([0-9.]+ s\), slices added: none; repainted: axis 0: 12", err), err
    notes = library.card("r1-ts-phantom", library.versions("r1-ts-phantom")[-1]).provenance.notes
    assert notes.startswith("round 3:") and notes.endswith("slices added: none; slices repainted: axis 0: 12"), notes


def test_a_previous_result_cropped_like_a_slicer_export_is_placed_and_one_of_another_grid_refused(
    tmp_path, capsys, model_library
):
    """``--previous`` goes onto the image's grid as the annotation does: a file cropped to its segments (origin
    shifted by whole voxels) is embedded; one on another grid is refused in one line before any training."""
    image, truth, painted = _ellipsoid(tmp_path)
    write_volume(image.with_array(painted), tmp_path / "round1.nii.gz")
    common = ["finetune", "--input", str(tmp_path / "image.nii.gz"), "--iterations", "2", "--device", "cpu"]
    assert main([*common, "--annotations", str(tmp_path / "round1.nii.gz"), "--save-model", "crop"]) == 0
    painted[8] = truth[8]
    write_volume(image.with_array(painted), tmp_path / "round2.nii.gz")
    shown = painted.copy()
    shown[2:14, 8:32, 10:30] |= truth[2:14, 8:32, 10:30]
    cropped = Volume(shown[:, 5:35, 5:35], spacing=(2.0, 2.0, 2.0), origin=(10.0, 10.0, 0.0))  # 5 voxels in
    write_volume(cropped, tmp_path / "cropped.nii.gz")
    other = Volume(shown, spacing=(1.0, 1.0, 1.0))
    write_volume(other, tmp_path / "other.nii.gz")
    round2 = [*common, "--annotations", str(tmp_path / "round2.nii.gz"), "--model", "crop", "--no-save"]
    capsys.readouterr()
    assert main([*round2, "--previous", str(tmp_path / "other.nii.gz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the previous result" in err[0] and "other.nii.gz" in err[0] and "geometry" in err[0]
    assert main([*round2, "--previous", str(tmp_path / "cropped.nii.gz"), "--output", str(tmp_path / "r2.nii.gz")]) == 0
    out = read_labelmap(tmp_path / "r2.nii.gz").array
    assert np.array_equal(out[:5], shown[:5])  # the cropped file, in place: slices far from 8 as on screen


def test_a_new_model_saved_under_a_taken_name_is_noted(tmp_path, capsys, model_library):
    image, truth, painted = _ellipsoid(tmp_path)
    write_volume(image.with_array(painted), tmp_path / "painted.nii.gz")
    run = ["finetune", "--input", str(tmp_path / "image.nii.gz"), "--annotations", str(tmp_path / "painted.nii.gz")]
    run += ["--iterations", "1", "--device", "cpu", "--save-model", "Liver (patient 12)"]
    assert main(run) == 0
    assert "note: the library already holds" not in capsys.readouterr().err
    assert main([*run, "--model", "Liver (patient 12)"]) == 0  # continued: its own next version, no note
    assert "note: the library already holds" not in capsys.readouterr().err
    assert main(run) == 0  # a new network under the same name
    err = capsys.readouterr().err
    assert "note: the library already holds a model 'liver-patient-12' that this one does not continue" in err
    assert ModelLibrary(model_library).versions("liver-patient-12") == ["1.0.0", "1.1.0", "1.2.0"]


def _ellipsoid(tmp_path):
    """(image, truth, painting on slices 4 and 12): a bright ellipsoid of 2 mm voxels; the image written to
    image.nii.gz."""
    z, y, x = np.indices((16, 40, 40))
    truth = (((z - 8) / 6) ** 2 + ((y - 20) / 12) ** 2 + ((x - 20) / 10) ** 2 <= 1).astype(np.uint8)
    image = Volume((100.0 * truth).astype(np.float32), spacing=(2.0, 2.0, 2.0))
    write_volume(image, tmp_path / "image.nii.gz")
    painted = np.zeros_like(truth)
    painted[[4, 12]] = truth[[4, 12]]
    return image, truth, painted


def test_a_segment_added_in_a_correction_round_keeps_its_name_and_color(tmp_path, capsys, model_library):
    """A correction round that paints a structure the round model lacks (``--extend-head``): the new class takes
    the .seg.nrrd segment's name and color in the result and the saved round, as the painted classes did in round 1."""
    import slicerio

    from SegNetsLib.card.card import LabelInfo
    from SegNetsLib.imageio.segmentations import write_segmentation

    image, truth, painted = _ellipsoid(tmp_path)
    liver, lesion = LabelInfo(1, "Liver", (0.8, 0.4, 0.3)), LabelInfo(2, "Lesion", (0.9, 0.9, 0.1))
    write_segmentation(image.with_array(painted), [liver], tmp_path / "round1.seg.nrrd")
    common = ["finetune", "--input", str(tmp_path / "image.nii.gz"), "--iterations", "2", "--device", "cpu"]
    assert main([*common, "--annotations", str(tmp_path / "round1.seg.nrrd"), "--save-model", "organs"]) == 0
    second = painted.copy()
    second[8] = truth[8]
    second[8, 18:22, 18:22] = 2  # a lesion inside the structure, painted on the added slice
    write_segmentation(image.with_array(second), [liver, lesion], tmp_path / "round2.seg.nrrd")
    out = tmp_path / "round2_result.seg.nrrd"
    round2 = ["--annotations", str(tmp_path / "round2.seg.nrrd"), "--model", "organs", "--extend-head"]
    assert main([*common, *round2, "--output", str(out)]) == 0, capsys.readouterr().err
    segments = {s["labelValue"]: s for s in slicerio.read_segmentation(str(out), skip_voxels=True)["segments"]}
    assert [segments[v]["name"] for v in (1, 2)] == ["Liver", "Lesion"]
    assert [round(c, 3) for c in segments[2]["color"]] == [0.9, 0.9, 0.1]
    library = ModelLibrary(model_library)
    card = library.card("organs", library.versions("organs")[-1])
    assert card.provenance.round == 2 and [label.name for label in card.labels] == ["Liver", "Lesion"]
