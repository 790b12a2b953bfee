"""Fuzzing annotation files: labelmaps of any pixel type with labels out of range, on another geometry."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from fuzzing import LENGTHS, fuzz
from hypothesis import strategies as st

from SegNetsLib.core.annotation import annotated_slices, annotation_classes, check_annotation, embed_in_image_grid
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.segmentations import read_labelmap

IMAGE = Volume(np.random.default_rng(0).normal(0, 1, (12, 10, 9)).astype(np.float32), (1.0, 1.0, 2.0))
DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.float32, np.float64]
VALUES = st.sampled_from([0, 1, 2, 3, 255, 256, 65535, 70000, -1, -128, 2**31 - 1, 1.5, float("nan"), float("inf")])


@st.composite
def annotations(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.sampled_from([IMAGE.shape_kji, (12, 10, 9), (6, 10, 9), (1, 10, 9), (12, 10, 2), (3, 4, 5)]))
    array = np.zeros(shape, np.float64)
    for _ in range(draw(st.integers(0, 4))):
        k = draw(st.integers(0, shape[0] - 1))
        array[k, : draw(st.integers(1, shape[1])), : draw(st.integers(1, shape[2]))] = draw(VALUES)
    with np.errstate(invalid="ignore", over="ignore"):
        if np.issubdtype(dtype, np.integer):
            array = np.nan_to_num(array, nan=0, posinf=0, neginf=0)
            info = np.iinfo(dtype)
            array = np.clip(array, info.min, info.max)
        array = array.astype(dtype)
    spacing = draw(st.sampled_from([IMAGE.spacing, (1.0, 1.0, 1.0), (0.5, 1.0, 2.0)]))
    origin = draw(st.sampled_from([(0.0, 0.0, 0.0), (0.0, 0.0, 4.0), (0.3, 0.0, 0.0), (-5.0, 0.0, 0.0)]))
    direction = draw(
        st.sampled_from([(1, 0, 0, 0, 1, 0, 0, 0, 1), (0, 1, 0, 1, 0, 0, 0, 0, 1), (-1, 0, 0, 0, 1, 0, 0, 0, 1)])
    )
    suffix = draw(st.sampled_from([".nrrd", ".nii.gz", ".mha"]))
    return array, spacing, origin, direction, suffix


@pytest.mark.parametrize("long", LENGTHS)
def test_mutated_annotation_files(workspace, long):
    """Labels out of range (negative, 70000, 2^31 - 1, fractions, NaN), other shapes, spacings, origins and
    directions, every pixel type, three formats: read, placed on the image's grid, checked, counted."""

    def attempt(value, folder):
        array, spacing, origin, direction, suffix = value
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        image.SetDirection([float(v) for v in direction])
        path = folder / f"labels{suffix}"
        sitk.WriteImage(image, str(path))

        def call():
            annotation = embed_in_image_grid(IMAGE, read_labelmap(path))
            check_annotation(IMAGE, annotation, path.name)
            annotated_slices(annotation.array)
            annotation_classes(annotation.array)

        return call

    fuzz("fuzz-annotation", long, annotations(), attempt, workspace)
