"""The walkers' working grid (SegNetsLib.finetune.working_grid): when it coarsens, by how much, and the way back."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest

import SegNetsLib.finetune.working_grid as working
from SegNetsLib.core.box import Box
from SegNetsLib.core.volume import Volume
from SegNetsLib.evaluation.metrics import dice
from SegNetsLib.finetune.options import FinetuneOptions
from SegNetsLib.finetune.run import finetune
from SegNetsLib.finetune.working_grid import WorkingGrid, working_grid


def test_a_box_within_the_limit_keeps_the_full_grid_and_its_arrays():
    grid = working_grid((60, 400, 400), (0.75, 0.75, 1.5), {0: [10, 30, 50]}, Box(0, 0, 0, 20, 200, 200))
    image = np.zeros((60, 400, 400), np.float32)
    assert not grid.coarse
    assert grid.image(image) is image and grid.labels(image) is image and grid.full(image) is image


def test_a_large_box_is_coarsened_across_the_painted_slices_within_the_cap():
    box = Box(0, 0, 0, 100, 400, 400)  # 16 million voxels: to 3 mm in-plane
    assert working_grid((100, 400, 400), (0.75, 0.75, 1.5), {0: [20, 50, 80]}, box).factors == (1, 4, 4)
    half = Box(0, 0, 0, 50, 400, 400)  # 8 million voxels
    assert working_grid((100, 400, 400), (0.8, 1.0, 1.5), {0: [20, 50, 80]}, half).factors == (1, 3, 3)
    # painted across axis 1: axes 0 (1.5 mm: 2) and 2 are coarsened
    assert working_grid((100, 400, 400), (0.75, 0.75, 1.5), {1: [20, 50, 80]}, half).factors == (2, 1, 4)
    # a box of 40 million voxels (a CT colon): coarser than 3 mm until at most a million voxels are left
    colon = Box(0, 0, 0, 224, 366, 484)
    assert working_grid((224, 366, 484), (0.75, 0.75, 1.5), {0: [42, 115, 187]}, colon).factors == (1, 7, 7)
    # a 3 mm volume is already as coarse as the walkers' constants were chosen at, unless its box is huge
    assert not working_grid((100, 400, 400), (3.0, 3.0, 3.0), {0: [20, 50, 80]}, Box(0, 0, 0, 84, 150, 150)).coarse
    huge = Box(0, 0, 0, 100, 150, 150)  # 2.25 million voxels: to 6 mm
    assert working_grid((100, 400, 400), (3.0, 3.0, 3.0), {0: [20, 50, 80]}, huge).factors == (1, 2, 2)
    assert not working_grid((100, 400, 400), (0.75, 0.75, 1.5), {0: [20, 50, 80]}, None).coarse


def test_images_average_labels_vote_and_weights_need_the_whole_block():
    grid = WorkingGrid((2, 4, 5), (1, 2, 2))
    image = np.arange(40, dtype=np.float32).reshape(2, 4, 5)
    coarse = grid.image(image)
    assert coarse.shape == (2, 2, 3)
    assert coarse[0, 0, 0] == pytest.approx(image[0, :2, :2].mean())
    assert coarse[1, 1, 2] == pytest.approx(image[1, 2:4, 4].mean())  # the last block: the edge repeated
    labels = np.zeros((2, 4, 5), np.uint8)
    labels[0, :2, :2] = [[3, 3], [3, 0]]
    labels[0, 2:, :2] = [[3, 0], [0, 0]]
    assert grid.labels(labels)[0, :, 0].tolist() == [3, 0]
    weight = np.ones((2, 4, 5), np.float32)
    weight[1, 0, 0] = 0.0
    assert grid.weight(weight)[1, 0, 0] == 0.0 and grid.weight(weight)[1, 0, 1] == 1.0
    channels = np.stack([image, 2 * image])
    assert grid.image(channels).shape == (2, 2, 2, 3)
    assert np.allclose(grid.image(channels)[1], 2 * coarse)


def test_the_way_back_places_a_boundary_where_it_was():
    shape, factors = (4, 64, 64), (1, 4, 4)
    grid = WorkingGrid(shape, factors)
    x = np.indices(shape)[2]
    # on a block's border: exact; a block half filled votes background, the edge moving to the block's end
    for edge, expected in ((20, 20), (21, 20), (22, 24), (23, 24), (30, 32)):
        labels = (x >= edge).astype(np.uint8) * 2
        back = grid.full(grid.labels(labels))
        assert back.shape == shape and set(np.unique(back)) == {0, 2}
        assert int(np.argmax(back[0, 0] > 0)) == expected, edge


def test_the_way_back_fills_a_grid_the_factors_do_not_divide_and_keeps_neighbouring_labels_apart():
    shape = (3, 30, 30)  # coarse 3 x 8 x 8, the last blocks half outside the grid
    grid = WorkingGrid(shape, (1, 4, 4))
    x = np.indices(shape)[2]
    labels = np.where(x < 15, 1, 2).astype(np.uint8)  # two labels touching, no background between them
    labels[:, :, 26:] = 3  # a third label up to the far edge
    back = grid.full(grid.labels(labels))
    assert back.shape == shape and set(np.unique(back)) == {1, 2, 3}
    row = back[1, 10].tolist()
    assert row[:15] == [1] * 15 and row[17:24] == [2] * 7 and row[28:] == [3, 3]
    assert row.index(2) in (15, 16) and row.index(3) in (24, 25, 26, 27, 28)


def test_a_ball_comes_back_from_a_coarser_grid_nearly_whole():
    shape = (20, 80, 80)
    z, y, x = np.indices(shape)
    ball = (((z - 10) / 8.0) ** 2 + ((y - 40) / 25.0) ** 2 + ((x - 38) / 20.0) ** 2 <= 1).astype(np.uint8)
    grid = WorkingGrid(shape, (1, 4, 4))
    back = grid.full(grid.labels(ball))
    blocky = np.repeat(np.repeat(grid.labels(ball), 4, axis=1), 4, axis=2)  # each block its vote
    assert dice(back > 0, ball > 0) > 0.95 and dice(back > 0, ball > 0) > dice(blocky > 0, ball > 0)
    assert not grid.full(np.zeros((20, 20, 20), np.uint8)).any()


def test_a_grid_cut_to_a_region_sees_what_the_whole_grid_sees_there():
    """Cut to a box and the refinement's reach around it, in whole blocks, the grid averages, votes, places boxes
    and comes back exactly as the whole grid does inside that region."""
    rng = np.random.default_rng(1)
    shape, spacing = (30, 90, 86), (0.75, 0.75, 1.5)
    whole = WorkingGrid(shape, (1, 4, 4))
    box = Box(12, 30, 28, 20, 50, 48)
    cut = whole.within(box, 6.0, spacing)  # 6 mm: 2 coarse voxels in-plane (+3), 4 slices (+3)
    region = cut.region
    assert region.start[1] % 4 == 0 and region.start[2] % 4 == 0
    assert all(stop % 4 == 0 or stop == n for stop, n in zip(region.stop[1:], shape[1:]))
    assert region.start == (5, 8, 8) and region.stop == (27, 72, 68)
    image = rng.normal(size=(2, *shape)).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[14:19, 33:47, 30:45] = rng.integers(0, 3, size=(5, 14, 15))
    weight = (rng.random(shape) > 0.3).astype(np.float32)
    inside = (slice(None), *whole.box(region).slices)
    assert np.array_equal(cut.image(image), whole.image(image)[inside])
    assert np.array_equal(cut.labels(labels), whole.labels(labels)[inside[1:]])
    assert np.array_equal(cut.weight(weight), whole.weight(weight)[inside[1:]])
    origin = whole.box(region).start
    assert cut.box(box) == Box(
        *(a - o for a, o in zip(whole.box(box).start, origin)), *(b - o for b, o in zip(whole.box(box).stop, origin))
    )
    assert np.array_equal(cut.full(cut.labels(labels)), whole.full(whole.labels(labels)))
    assert cut.slices({0: [14, 16, 18]}) == {0: [9, 11, 13]}
    assert WorkingGrid(shape).within(box, 6.0, spacing).region is None  # the full grid is never cut


def test_a_fine_tune_whose_walkers_work_coarser_keeps_the_painting_and_finds_the_structure(monkeypatch):
    """A 0.75 mm phantom whose known box exceeds a lowered limit: the walkers work on a 4x coarser grid, and the
    result is on the full grid, every painted voxel the user's, the structure found between the painted slices."""
    rng = np.random.default_rng(0)
    shape = (12, 96, 96)
    z, y, x = np.indices(shape)
    truth = (((z - 6) / 5.0) ** 2 + ((y - 48) / 30.0) ** 2 + ((x - 46) / 26.0) ** 2 <= 1).astype(np.uint8)
    image = Volume((100.0 * truth + rng.normal(0, 10, shape)).astype(np.float32), spacing=(0.75, 0.75, 2.0))
    painted = np.full(shape, 255, np.uint8)
    for index in (3, 6, 9):
        painted[index] = truth[index]
    annotation = image.with_array(painted)
    before = painted.copy()
    grids = []
    real = working.working_grid

    def spy(*args):
        grids.append(real(*args))
        return grids[-1]

    monkeypatch.setattr(working, "MAX_WORKING_VOXELS", 10_000)
    monkeypatch.setattr("SegNetsLib.finetune.walkers.working_grid", spy)
    options = FinetuneOptions(
        iterations=3,
        device="cpu",
        patch_size=(8, 16, 16),
        batch_size=1,
        scratch_build_args={"base_channels": 2, "levels": 2},
    )
    result = finetune(image, annotation, "unet3d", dataclasses.replace(options, validation=False))
    assert grids and grids[0].factors == (1, 4, 4)
    out = np.asarray(result.labelmap.array)
    assert out.shape == shape
    assert np.array_equal(painted, before)
    assert np.array_equal(out[[3, 6, 9]], truth[[3, 6, 9]])
    assert dice(out > 0, truth > 0) > 0.85


def test_the_way_back_holds_few_copies_of_the_region():
    """The way back of a labelmap reaching across the whole grid holds the output, each label's share (float32),
    the background's and a small index per voxel: under 12 bytes per voxel for one label (a stack, a second one
    with the background and an int64 argmax had taken 30; a clinical CT's colon region has 44 million voxels)."""
    shape, factors = (24, 256, 256), (1, 4, 4)
    grid = WorkingGrid(shape, factors)
    z, y, x = np.indices(grid.labels(np.zeros(shape, np.uint8)).shape)
    coarse = ((y - 32) ** 2 + (x - 32) ** 2 < 30**2).astype(np.uint8)  # the whole grid's width
    coarse[z == 0] = 0  # not a box: the way back covers all of it but the first slice
    tracemalloc.start()
    try:
        back = grid.full(coarse)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert back.dtype == np.uint8 and set(np.unique(back)) == {0, 1}
    print(f"peak {peak / back.size:.1f} bytes per voxel")
    assert peak < 12 * back.size, peak / back.size
