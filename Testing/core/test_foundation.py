"""The shared foundation — Volume geometry, file IO with clear errors, atomic writes, cancel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from SegNetsLib.core.atomic import atomic_file, atomic_folder
from SegNetsLib.core.errors import Cancelled, SegNetsError
from SegNetsLib.core.progress import CancelToken
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.volumes import read_volume, volume_from_sitk, write_volume


def _oblique_volume() -> Volume:
    angle = np.deg2rad(30.0)
    direction = np.array([[np.cos(angle), 0, np.sin(angle)], [0, -1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    array = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    return Volume(array, (0.7, 0.8, 2.5), (10.0, -20.0, 5.0), direction)


def test_ijk_to_lps_maps_voxel_centres_like_simpleitk():
    volume = _oblique_volume()
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(volume.direction.ravel()))
    index = (3, 1, 4)  # (i, j, k)
    expected = image.TransformIndexToPhysicalPoint(index)
    assert np.allclose(volume.ijk_to_lps() @ np.array([*index, 1.0]), [*expected, 1.0])


def test_sub_volume_keeps_every_voxel_where_it_was():
    from SegNetsLib.core.box import Box
    from SegNetsLib.core.volume import sub_volume

    direction = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    volume = Volume(np.arange(2 * 5 * 6 * 7).reshape(2, 5, 6, 7), (0.5, 2.0, 3.0), (10.0, -4.0, 7.0), direction)
    part = sub_volume(volume, Box(1, 2, 3, 4, 6, 7))
    assert part.array.shape == (2, 3, 4, 4) and part.array[1, 0, 0, 0] == volume.array[1, 1, 2, 3]
    centre = volume.ijk_to_lps() @ np.array([3 + 2, 2 + 1, 1 + 2, 1.0])
    assert np.allclose(part.ijk_to_lps() @ np.array([2, 1, 2, 1.0]), centre)


def test_ras_and_lps_constructors_invert_each_other():
    volume = _oblique_volume()
    again = Volume.from_ijk_to_ras(volume.array, volume.ijk_to_ras())
    assert volume.same_geometry(again)
    assert np.allclose(again.spacing, volume.spacing)
    assert np.allclose(again.direction, volume.direction)


def test_write_then_read_keeps_voxels_and_geometry(tmp_path):
    volume = _oblique_volume()
    for name in ("v.nii.gz", "v.nrrd", "v.mha"):
        loaded = read_volume(write_volume(volume, tmp_path / name))
        assert np.allclose(loaded.array, volume.array)
        assert loaded.same_geometry(volume, tolerance_mm=1e-4), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mha", "v.nii.gz", "v.nrrd"]


def test_real_ct_from_testing_data_reads_in_kji_order(data_dir):
    volume = read_volume(data_dir / "ts_ct_sm" / "image.nii.gz")
    assert volume.shape_kji == (30, 101, 122)  # meta.json: size x, y, z = 122, 101, 30
    assert np.allclose(volume.spacing, (3.0, 3.0, 3.0))


@pytest.mark.parametrize(
    "array, spacing, message",
    [
        (np.zeros((4, 5, 6), np.float32), (1, 1, 1), "constant"),
        (np.full((4, 5, 6), np.nan, np.float32), (1, 1, 1), "NaN"),
        (np.arange(120, dtype=np.float32).reshape(4, 5, 6), (1, 0, 1), "spacing"),
    ],
)
def test_bad_volumes_give_one_sentence_naming_the_file(tmp_path, array, spacing, message):
    path = tmp_path / "bad.nrrd"
    image = sitk.GetImageFromArray(array)
    if min(spacing) > 0:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    if min(spacing) <= 0:  # SimpleITK refuses zero spacing, so patch the header like a broken exporter would
        text = path.read_bytes().replace(
            b"space directions: (1,0,0) (0,1,0) (0,0,1)", b"space directions: (1,0,0) (0,0,0) (0,0,1)"
        )
        path.write_bytes(text)
    with pytest.raises(SegNetsError, match=message) as info:
        read_volume(path)
    assert str(path) in str(info.value)


def test_2d_and_unreadable_files_are_refused(tmp_path):
    flat = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(20, dtype=np.float32).reshape(4, 5)), str(flat))
    with pytest.raises(SegNetsError, match="2D"):
        read_volume(flat)
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not an image")
    with pytest.raises(SegNetsError, match="not a readable image"):
        read_volume(junk)


def test_vector_image_becomes_channels_first():
    image = sitk.GetImageFromArray(np.zeros((3, 4, 5, 2), np.float32), isVector=True)
    assert volume_from_sitk(image).array.shape == (2, 3, 4, 5)


def test_atomic_file_leaves_nothing_when_the_write_fails(tmp_path):
    target = tmp_path / "out.seg.nrrd"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as temporary:
            assert temporary.name.endswith(".seg.nrrd")
            temporary.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_refuses_to_overwrite_and_cleans_up(tmp_path):
    target = tmp_path / "model"
    with atomic_folder(target) as folder:
        (folder / "card.json").write_text("{}")
    assert (target / "card.json").read_text() == "{}"
    with pytest.raises(FileExistsError):
        with atomic_folder(target):
            pass
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "other") as folder:
            (folder / "weights.safetensors").write_bytes(b"x")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_cancel_token_raises_once_set():
    token = CancelToken()
    token.raise_if_cancelled()
    token.cancel()
    assert token.cancelled
    with pytest.raises(Cancelled):
        token.raise_if_cancelled()


def test_atomic_writes_land_with_the_permissions_of_a_new_file_not_the_temporary_ones(tmp_path):
    """A result or model shared with colleagues is readable as any file the user writes (umask 022: 644 / 755)."""
    import os

    old = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "out.nii.gz") as temporary:
            temporary.write_bytes(b"x")
        with atomic_folder(tmp_path / "model") as folder:
            (folder / "card.json").write_text("{}")
        os.umask(0o077)  # a private user's files stay private
        with atomic_file(tmp_path / "private.nrrd") as temporary:
            temporary.write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.nii.gz").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "private.nrrd").stat().st_mode & 0o777 == 0o600


def test_saved_weights_are_readable_as_any_new_file(tmp_path):
    import os

    from torch import nn

    from SegNetsLib.models.weights import write_weights

    old = os.umask(0o022)
    try:
        write_weights(nn.Linear(2, 2), tmp_path / "weights.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "weights.safetensors").stat().st_mode & 0o777 == 0o644


def test_same_geometry_tolerance_is_in_mm_however_far_the_origin():
    a = Volume(np.zeros((2, 2, 2)), (0.7, 0.7, 1.0), (-250.0, -250.0, -1200.0))
    assert a.same_geometry(Volume(a.array, a.spacing, (-250.0, -250.0, -1200.0005)))
    assert not a.same_geometry(Volume(a.array, a.spacing, (-250.0, -250.0, -1200.01)))


@pytest.mark.parametrize(
    "name, kept",
    [("x" * 240 + ".nii.gz", ".nii.gz"), ("case." + "y" * 120 + ".seg.nrrd", ".seg.nrrd"), ("z" * 250, "")],
)
def test_atomic_writes_take_any_name_the_file_system_takes(tmp_path, name, kept):
    with atomic_file(tmp_path / name) as temporary:
        assert temporary.name.startswith(".") and temporary.name.endswith(".partial" + kept)
        temporary.write_text("new")
    with atomic_folder(tmp_path / (name[:249] + "_model")) as folder:
        (folder / "weights").write_text("w")
    assert (tmp_path / name).read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, name[:249] + "_model"])


def test_writable_folder_makes_the_folder_and_refuses_a_place_that_takes_no_files(tmp_path):
    from SegNetsLib.core.atomic import writable_folder

    made = writable_folder(tmp_path / "a" / "b")
    assert made.is_dir() and list(made.iterdir()) == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        writable_folder(tmp_path / "file" / "out")
    if Path("/proc/self").is_dir():  # a folder of a read-only file system
        with pytest.raises(OSError):
            writable_folder("/proc/self")
