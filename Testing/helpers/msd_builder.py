"""Tiny labeled datasets in the MSD / nnU-Net layout, cut from the real CT volumes in Testing/Data.

Each case is a slab of TotalSegmentator's example CT (3 mm, abdomen) holding the liver and the spleen,
down-sampled by 2 per axis (6 mm): about 16 x 51 x 61 voxels. Labels: 1 = liver, 2 = spleen.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

# (source folder, first slice, last slice + 1) of each case, in array order (k)
SLABS = (
    ("ts_ct_full", 64, 96),
    ("ts_ct_full", 72, 104),
    ("ts_ct_full", 80, 112),
    ("ts_ct_sm", 0, 30),
    ("ts_ct_full", 68, 100),
)
SOURCE_LABELS = {"liver": 5, "spleen": 1}


def _slab(data_dir: Path, source: str, z0: int, z1: int) -> tuple[sitk.Image, sitk.Image]:
    """(image, labels 0/1/2) of slices z0..z1 of ``source``, every second voxel per axis."""
    image = sitk.ReadImage(str(data_dir / source / "image.nii.gz"))
    labels = sitk.ReadImage(str(data_dir / source / "label.nii.gz"))
    image, labels = image[::2, ::2, z0:z1:2], labels[::2, ::2, z0:z1:2]
    source_values = sitk.GetArrayFromImage(labels)
    ours = np.zeros(source_values.shape, np.uint8)
    for value, name in enumerate(SOURCE_LABELS, start=1):
        ours[source_values == SOURCE_LABELS[name]] = value
    out = sitk.GetImageFromArray(ours)
    out.CopyInformation(labels)
    return sitk.Cast(image, sitk.sitkInt16), out


def make_msd_dataset(
    root: Path,
    data_dir: Path,
    *,
    cases: int = 4,
    layout: str = "nnunet",
    channels: int = 1,
    ignore_every: int = 0,
    suffix: str = ".nii.gz",
) -> Path:
    """Write a dataset to ``root`` and return it.

    layout "nnunet": imagesTr/CASE_0000<suffix> per channel, nnU-Net v2 dataset.json (name: value labels);
    layout "msd": imagesTr/CASE<suffix> (a 4D file when channels > 1), MSD dataset.json ("value": name).
    A second channel is the CT smoothed (a real, different image of the same geometry).
    ignore_every > 0: in every case, slices k % ignore_every != 0 get the ignore label (partially labeled).
    """
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    names = list(SOURCE_LABELS)
    ignore_value = len(names) + 1
    for index, (source, z0, z1) in enumerate(SLABS[:cases]):
        case = f"case_{index:03d}"
        image, labels = _slab(data_dir, source, z0, z1)
        images = [
            image,
            sitk.Cast(sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), 6.0), sitk.sitkInt16),
        ][:channels]
        if ignore_every:
            array = sitk.GetArrayFromImage(labels)
            keep = np.arange(array.shape[0]) % ignore_every == 0
            array[~keep] = ignore_value
            partial = sitk.GetImageFromArray(array)
            partial.CopyInformation(labels)
            labels = partial
        sitk.WriteImage(labels, str(root / "labelsTr" / f"{case}{suffix}"))
        if layout == "nnunet":
            for channel, part in enumerate(images):
                sitk.WriteImage(part, str(root / "imagesTr" / f"{case}_{channel:04d}{suffix}"))
        elif channels == 1:
            sitk.WriteImage(images[0], str(root / "imagesTr" / f"{case}{suffix}"))
        else:
            sitk.WriteImage(sitk.JoinSeries(images), str(root / "imagesTr" / f"{case}{suffix}"))
    channel_names = {str(c): name for c, name in enumerate(["CT", "CT smoothed"][:channels])}
    if layout == "nnunet":
        labels_json = {"background": 0, **{name: value for value, name in enumerate(names, start=1)}}
        if ignore_every:
            labels_json["ignore"] = ignore_value
        spec = {
            "name": "TinyAbdomen",
            "channel_names": channel_names,
            "labels": labels_json,
            "numTraining": cases,
            "file_ending": suffix,
        }
    else:
        labels_json = {"0": "background", **{str(value): name for value, name in enumerate(names, start=1)}}
        if ignore_every:
            labels_json[str(ignore_value)] = "ignore"
        spec = {
            "name": "TinyAbdomen",
            "modality": channel_names,
            "labels": labels_json,
            "numTraining": cases,
            "training": [
                {"image": f"./imagesTr/case_{i:03d}{suffix}", "label": f"./labelsTr/case_{i:03d}{suffix}"}
                for i in range(cases)
            ],
        }
    (root / "dataset.json").write_text(json.dumps(spec, indent=1))
    return root
