"""Fuzzing training datasets: dataset.json mutated field by field, labels out of range, other geometry."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from fuzzing import LENGTHS, fuzz, mutated_json
from hypothesis import strategies as st
from msd_builder import make_msd_dataset

from SegNetsLib.training.dataset import load_dataset, read_case


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, data_dir):
    return make_msd_dataset(tmp_path_factory.mktemp("fuzz-dataset") / "Tiny", data_dir, cases=2)


LABEL_CHANGES = st.sampled_from(["none", "out of range", "negative", "fraction", "shifted", "resized", "float"])


def _change_label(path, change: str) -> None:
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    if change == "out of range":
        array[0, 0, 0] = 9
    elif change == "negative":
        array[0, 0, 0] = -1
    elif change == "fraction":
        array[0, 0, 0] = 0.5
    out = sitk.GetImageFromArray(array[:, :-3] if change == "resized" else array)
    out.CopyInformation(image) if change != "resized" else out.SetSpacing(image.GetSpacing())
    if change == "shifted":
        out.SetOrigin(tuple(o + 7.0 for o in image.GetOrigin()))
    sitk.WriteImage(sitk.Cast(out, sitk.sitkFloat32 if change in ("fraction", "float") else sitk.sitkInt16), str(path))


@pytest.mark.parametrize("long", LENGTHS)
def test_mutated_dataset_json(dataset, workspace, long):
    """dataset.json's labels, channel names, file ending, case counts and training list replaced, deleted or
    grown; a case's label file with labels out of range, fractions, another origin or size."""
    spec = json.loads((dataset / "dataset.json").read_text())

    def attempt(value, folder):
        changed, change = value
        root = folder / "Tiny"
        shutil.copytree(dataset, root)
        (root / "dataset.json").write_text(json.dumps(changed, allow_nan=True, ensure_ascii=False))
        if change != "none":
            _change_label(sorted((root / "labelsTr").iterdir())[0], change)

        def call():
            loaded = load_dataset(root)
            for case in loaded.cases:
                read_case(case, loaded)

        return call

    fuzz("fuzz-dataset", long, st.tuples(mutated_json(spec, max_mutations=2), LABEL_CHANGES), attempt, workspace)
