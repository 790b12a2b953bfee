"""Fixtures of the batch script's tests: a folder of small real volumes and a model library with a tiny model."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data_dir):
    """A folder with two small real CT volumes (different sizes, NIfTI and NRRD) and one broken file."""
    from SegNetsLib.app.selftest import load_case
    from SegNetsLib.imageio.volumes import write_volume

    folder = tmp_path_factory.mktemp("inputs")
    image, _ = load_case(data_dir)
    write_volume(_part(image, 16, 32, 32), folder / "ct_a.nii.gz")
    write_volume(_part(image, 12, 24, 40), folder / "ct_b.nrrd")
    (folder / "broken.nii.gz").write_bytes(b"this is not a NIfTI file")
    (folder / "notes.txt").write_text("ignored: not a volume")
    return folder


def _part(image, d, h, w):
    from SegNetsLib.core.volume import Volume

    return Volume(image.array[:d, :h, :w].copy(), image.spacing, image.origin, image.direction)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A model library holding "all-liver", a tiny model biased to label every voxel liver."""
    from SegNetsLib.app.selftest import add_tiny_model
    from SegNetsLib.models.library import ModelLibrary

    library = ModelLibrary(tmp_path_factory.mktemp("models"))
    add_tiny_model(library, "all-liver", foreground_bias=20.0, patch_size=(16, 32, 32))
    return library
