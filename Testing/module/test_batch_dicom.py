"""SegNets/Scripts/segnets_batch.py on a folder of DICOM series: each series one .seg.nrrd on the series' grid,
a broken series listed as failed while the others are segmented."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from dicom_helpers import ct_crop, write_series

pytest.importorskip("slicer")
slicerio = pytest.importorskip("slicerio")

SCRIPT = Path(__file__).resolve().parents[2] / "SegNets" / "Scripts" / "segnets_batch.py"


def test_a_folder_of_dicom_series_is_segmented_series_by_series(library, data_dir, tmp_path, capsys):
    from SegNetsLib.imageio.volumes import read_volume

    spec = importlib.util.spec_from_file_location("segnets_batch", SCRIPT)
    batch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(batch)
    crop = ct_crop(data_dir / "ts_ct_sm" / "image.nii.gz")
    inputs, output = tmp_path / "in", tmp_path / "out"
    good = write_series(crop, inputs, "CT abdomen", 3, names="A{:04d}")
    write_series(crop, inputs, "gap", 4, names="B{:04d}")[7].unlink()
    arguments = ["--input", str(inputs), "--model", "all-liver", "--output", str(output), "--device", "cpu"]
    assert batch.main([*arguments, "--roi", "off", "--library", str(library.root)]) == 1
    summary = json.loads((output / "summary.json").read_text())
    [succeeded], [failed] = summary["succeeded"], summary["failed"]
    assert Path(succeeded["input"]) == good[0] and Path(failed["input"]).name == "B0001"
    assert "1 slice(s) missing between B0007 and B0009" in capsys.readouterr().err
    result = Path(succeeded["output"])
    assert result.parent == output and result.name.startswith("CT_abdomen_3_")
    segmentation = slicerio.read_segmentation(str(result))
    mask = slicerio.extract_segments(segmentation, [("Liver", 1)])["voxels"]
    assert mask.transpose(2, 1, 0).shape == (16, 32, 32) and mask.all()
    series = read_volume(inputs / "A0005")
    np.testing.assert_allclose(np.asarray(segmentation["ijkToLPS"]), series.ijk_to_lps(), atol=1e-4)
