"""Card-driven preprocessing (reorient, resample, normalize) and the way back to the input grid."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from SegNetsLib.card.card import ChannelInfo, LabelInfo, ModelCard, Normalization
from SegNetsLib.core.box import Box
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.volumes import read_volume
from SegNetsLib.inference.preprocess import preprocess, to_source_grid

CARD = ModelCard(
    id="test-ct",
    name="test",
    version="1",
    architecture="unet3d",
    in_channels=[ChannelInfo("CT", "CT")],
    labels=[LabelInfo(5, "liver", (0.8, 0.5, 0.4))],
    normalization=Normalization("ct_window", (-100.0, 200.0)),
)


def _oblique(volume: Volume, degrees: float = 30.0) -> Volume:
    """The same voxels on a grid rotated about the k axis, with flipped i (an oblique, non-LPS volume)."""
    a = np.deg2rad(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return Volume(volume.array, volume.spacing, (14.0, -7.0, 33.0), rotation @ np.diag([-1.0, 1.0, 1.0]))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def liver(data_dir) -> Volume:
    """ts_ct_sm's liver (TotalSegmentator label 5) as a 0/1 float volume."""
    label = read_volume(data_dir / "ts_ct_sm" / "label.nii.gz")
    return label.with_array((label.array == 5).astype(np.float32))


def test_same_grid_keeps_the_array_without_copy(data_dir):
    ct = read_volume(data_dir / "ts_ct_sm" / "image.nii.gz")
    pre = preprocess(ct, CARD)
    assert pre.same_grid_as_source()
    assert np.shares_memory(pre.grid.array, ct.array)
    net = pre.network_input()
    assert net.shape == (1, *ct.shape_kji) and net.dtype == np.float32
    assert net.min() == 0.0 and net.max() == 1.0  # CT window [-100, 200] -> [0, 1], clipped
    expected = (np.clip(ct.array[5, 40, 60], -100, 200) + 100) / 300
    assert net[0, 5, 40, 60] == pytest.approx(expected, abs=1e-6)


def test_oblique_volume_is_reoriented_resampled_and_maps_back(liver):
    source = _oblique(liver)
    card = replace(CARD, target_spacing=(2.0, 2.5, 4.0), orientation="RAS", normalization=Normalization("none"))
    pre = preprocess(source, card)
    assert not pre.same_grid_as_source()
    assert pre.grid.spacing == (2.0, 2.5, 4.0)
    # RAS orientation: i points (roughly) to -L, j to -P, k to +S in LPS
    assert np.sign(np.diag(pre.grid.direction)).tolist() == [-1.0, -1.0, 1.0]

    # the liver's physical centre is the same on both grids
    def centre(volume: Volume, mask: np.ndarray) -> np.ndarray:
        kji = np.argwhere(mask).mean(axis=0)
        return (volume.ijk_to_lps() @ np.append(kji[::-1], 1.0))[:3]

    grid_mask = pre.grid.array[0] > 0.5
    # within half a network voxel (the liver touches the last slice, where 3 mm -> 4 mm cuts differently)
    assert np.linalg.norm(centre(pre.grid, grid_mask) - centre(source, source.array > 0.5)) < 2.0  # mm
    # and the mask on the network grid comes back onto the input's exact oblique grid
    back = to_source_grid(grid_mask.astype(np.uint8), pre, labels=True)
    assert back.shape == source.shape_kji
    assert _dice(back == 1, source.array > 0.5) > 0.93


def test_box_to_source_covers_what_the_box_maps_to(liver):
    source = _oblique(liver)
    pre = preprocess(source, replace(CARD, target_spacing=(2.0, 2.0, 4.0), normalization=Normalization("none")))
    mask = np.zeros(pre.shape, np.uint8)
    box = Box(5, 20, 30, 12, 60, 70)
    mask[box.slices] = 1
    source_box = pre.box_to_source(box)
    full = to_source_grid(mask, pre, labels=True)
    inside = to_source_grid(mask, pre, labels=True, box=source_box)
    assert full.sum() > 0 and np.array_equal(full[source_box.slices], inside)
    assert full.sum() == inside.sum()  # nothing of the box lands outside source_box


def test_coarse_input_keeps_the_extent(liver):
    pre = preprocess(liver, replace(CARD, normalization=Normalization("none")))
    coarse, ratio = pre.coarse_input(2.0)
    assert coarse.shape == (1, 15, 50, 61)
    assert ratio == pytest.approx((30 / 15, 101 / 50, 122 / 61))
    fine_centre = np.argwhere(liver.array > 0.5).mean(axis=0)
    coarse_centre = (np.argwhere(coarse[0] > 0.5).mean(axis=0) + 0.5) * ratio - 0.5
    assert np.abs(fine_centre - coarse_centre).max() < 1.0  # network voxels


def test_zscore_over_nonzero_voxels_keeps_zero_background(data_dir):
    mr = read_volume(data_dir / "ts_mr_sm" / "image.nii.gz")
    card = replace(CARD, normalization=Normalization("zscore", nonzero_only=True))
    net = preprocess(mr, card).network_input()[0]
    nonzero = mr.array != 0
    assert nonzero.sum() < mr.array.size  # the test needs background zeros
    assert np.all(net[~nonzero] == 0.0)
    assert net[nonzero].mean() == pytest.approx(0.0, abs=1e-3)
    assert net[nonzero].std() == pytest.approx(1.0, abs=1e-3)


def test_channel_count_mismatch_names_the_volume(data_dir):
    ct = read_volume(data_dir / "ts_ct_sm" / "image.nii.gz")
    two = replace(CARD, in_channels=[ChannelInfo("T1", "MR"), ChannelInfo("T2", "MR")])
    with pytest.raises(SegNetsError, match=r"ct\.nii\.gz: the image has 1 channel\(s\) but model 'test-ct' expects 2"):
        preprocess(ct, two, name="ct.nii.gz")


@pytest.mark.parametrize(
    "volume, problem",
    [
        (Volume(np.full((8, 8, 8), 3.0)), "constant"),
        (Volume(np.where(np.eye(8)[None] > 0, np.nan, 1.0) * np.ones((8, 1, 1))), "NaN"),
        (Volume(np.random.default_rng(0).random((8, 8, 8)), spacing=(1.0, 0.0, 1.0)), "spacing"),
        (Volume(np.random.default_rng(0).random((1, 8, 8))), "not a 3D volume"),
    ],
)
def test_bad_volumes_are_refused(volume, problem):
    with pytest.raises(SegNetsError, match=problem):
        preprocess(volume, CARD, name="scan.nrrd")


def test_network_grid_geometry_matches_dicom_orient_then_resample(data_dir):
    """The network grid of an oblique, flipped, permuted volume: DICOMOrient's axes, same extent start."""
    import SimpleITK as sitk

    from SegNetsLib.imageio.volumes import volume_to_sitk

    ct = _oblique(read_volume(data_dir / "ts_ct_sm" / "image.nii.gz"))
    permuted = Volume(
        np.ascontiguousarray(np.transpose(ct.array, (1, 0, 2))),
        (ct.spacing[0], ct.spacing[2], ct.spacing[1]),
        ct.origin,
        ct.direction[:, [0, 2, 1]],
    )
    card = replace(CARD, orientation="LPS", target_spacing=(2.0, 2.5, 4.0))
    grid = preprocess(permuted, card).grid
    oriented = sitk.DICOMOrient(volume_to_sitk(permuted), "LPS")
    assert np.allclose(grid.direction.ravel(), oriented.GetDirection())
    spacing = np.array(oriented.GetSpacing())
    start = np.array(oriented.GetOrigin()) + grid.direction @ ((np.array(card.target_spacing) - spacing) / 2.0)
    assert np.allclose(grid.origin, start, atol=1e-6)
    assert grid.shape_kji[::-1] == tuple(
        max(1, round(n * s / t)) for n, s, t in zip(oriented.GetSize(), spacing, card.target_spacing)
    )


def test_lazy_grid_resamples_crops_equal_to_the_whole_grid(data_dir):
    """lazy=True holds no network-grid array; its box crops and coarse input match the eager grid's."""
    ct = _oblique(read_volume(data_dir / "ts_ct_sm" / "image.nii.gz"))
    card = replace(CARD, orientation="LPS", target_spacing=(2.0, 2.5, 4.0))
    eager, lazy = preprocess(ct, card), preprocess(ct, card, lazy=True)
    assert lazy.lazy and not eager.lazy
    assert lazy.grid.array.strides == (0, 0, 0, 0)  # a placeholder: no voxel data
    assert lazy.shape == eager.shape and np.allclose(lazy.grid.ijk_to_lps(), eager.grid.ijk_to_lps())
    box = Box(3, 10, 12, 20, 40, 37)
    assert np.allclose(lazy.network_input(box), eager.network_input(box), atol=1e-5)
    assert np.allclose(lazy.network_input(), eager.network_input(), atol=1e-5)
    (coarse_lazy, ratio_lazy), (coarse_eager, ratio_eager) = lazy.coarse_input(2.0), eager.coarse_input(2.0)
    assert ratio_lazy == ratio_eager and coarse_lazy.shape == coarse_eager.shape
    difference = np.abs(coarse_lazy - coarse_eager)  # interpolated once from the source vs twice via the grid
    assert difference.mean() < 0.02 and np.corrcoef(coarse_lazy.ravel(), coarse_eager.ravel())[0, 1] > 0.97
    zscore = replace(card, normalization=Normalization("zscore"))
    assert not preprocess(ct, zscore, lazy=True).lazy  # z-score needs whole-grid statistics


def test_slab_wise_resampling_equals_one_resample_of_the_whole_source(data_dir):
    """The network grid is resampled in slabs, each from a crop of the source (no whole-source copy), and
    still equals SimpleITK resampling the whole oblique source at once (slabs span ``_SLAB`` slices)."""
    import SimpleITK as sitk

    from SegNetsLib.imageio.volumes import volume_to_sitk

    ct = _oblique(read_volume(data_dir / "ts_ct_full" / "image.nii.gz"), degrees=20.0)
    card = replace(CARD, target_spacing=(2.0, 2.0, 1.5))
    grid = preprocess(ct, card).grid
    assert grid.shape_kji[0] > 100  # many slabs
    whole = sitk.Resample(
        volume_to_sitk(ct),
        grid.shape_kji[::-1],
        sitk.Transform(),
        sitk.sitkLinear,
        grid.origin,
        grid.spacing,
        tuple(grid.direction.ravel()),
        0.0,
        sitk.sitkFloat32,
    )
    assert np.array_equal(grid.array[0], sitk.GetArrayFromImage(whole))


@pytest.mark.parametrize(
    ("spacing", "case"),
    [
        ((1e-9, 1e-9, 1e-9), "tiny-spacing"),
        ((1e6, 1e6, 1e6), "tiny-spacing"),
        ((1e-4, 1e-4, 1e-4), "grid-too-small"),
        ((6.0, 6.0, 0.001), "grid-too-small"),
        ((9000.0, 9000.0, 9000.0), "grid-too-large"),
    ],
)
def test_absurd_geometry_is_refused_naming_the_file(tmp_path, spacing, case):
    """A file whose spacing is absurd, or whose grid at the model's spacing holds no window or too many voxels."""
    import SimpleITK as sitk
    from fuzz_helpers import one_sentence
    from inference_helpers import TINY_CARD, tiny_unet
    from robustness_cases import expect

    from SegNetsLib.inference.predictor import Predictor

    array = np.random.default_rng(0).normal(size=(20, 24, 22)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    path = tmp_path / "ct.nrrd"
    sitk.WriteImage(image, str(path))
    predictor = Predictor(tiny_unet(), TINY_CARD, "cpu")
    with pytest.raises(SegNetsError) as refused:
        volume = read_volume(path) if case != "tiny-spacing" else None
        predictor.predict(volume or Volume(array, spacing), name=str(path))
    message = one_sentence(refused.value)
    assert message.startswith(str(path)) or message.startswith(f"{path}:"), message
    expect(case, message)
    if case == "tiny-spacing":
        with pytest.raises(SegNetsError, match="is outside"):
            read_volume(path)


def test_every_source_voxel_is_mapped_back_when_the_network_grid_does_not_divide_the_extent():
    """61 x 60 x 40 voxels of 3 mm on a 6 mm grid: 30.5 network voxels along i round to 30; the source's last
    column lies beyond the grid's last voxel and still takes its label (and probabilities summing to one)."""
    noise = np.random.default_rng(0).normal(size=(40, 60, 61)).astype(np.float32)
    volume = Volume(noise, spacing=(3.0, 3.0, 3.0), origin=(5.0, -3.0, 11.0))
    pre = preprocess(volume, replace(CARD, target_spacing=(6.0, 6.0, 6.0), normalization=Normalization("none")))
    grid_shape = pre.grid.array.shape[-3:]
    assert grid_shape[2] * 6.0 < 61 * 3.0  # the grid is shorter than the extent along i
    labels = to_source_grid(np.full(grid_shape, 5, np.uint8), pre, labels=True)
    assert labels.shape == (40, 60, 61) and (labels == 5).all()
    probabilities = to_source_grid(np.full(grid_shape, 1.0, np.float32), pre, labels=False)
    assert np.allclose(probabilities, 1.0)
