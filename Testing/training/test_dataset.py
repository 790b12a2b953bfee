"""The MSD / nnU-Net dataset layout: reading, checks with clear errors, patch sampling, sharding."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from msd_builder import make_msd_dataset

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.runtime.distributed import shard
from SegNetsLib.training.data import split_cases
from SegNetsLib.training.dataset import (
    IGNORE,
    CasePatchSampler,
    PreparedCase,
    load_dataset,
    read_case,
    targets_from_labels,
)


@pytest.fixture(scope="module")
def nnunet_dataset(tmp_path_factory, data_dir):
    return make_msd_dataset(tmp_path_factory.mktemp("nnunet") / "Dataset001_Tiny", data_dir)


def test_nnunet_layout_lists_cases_channels_and_labels(nnunet_dataset):
    dataset = load_dataset(nnunet_dataset)
    assert dataset.name == "TinyAbdomen"
    assert dataset.channels == ["CT"]
    assert dataset.labels == {1: "liver", 2: "spleen"}
    assert dataset.ignore_value is None
    assert [case.name for case in dataset.cases] == [f"case_{i:03d}" for i in range(4)]
    image, labels = read_case(dataset.cases[0], dataset)
    assert image.array.shape == (1, 16, 51, 61) and image.array.dtype == np.float32
    assert labels.array.shape == (16, 51, 61)
    assert set(np.unique(labels.array)) == {0, 1, 2}
    source = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset.cases[0].images[0])))
    np.testing.assert_array_equal(image.array[0], source)


def test_msd_layout_with_4d_images_and_ignore_label(tmp_path, data_dir):
    root = make_msd_dataset(tmp_path / "Task01", data_dir, cases=2, layout="msd", channels=2, ignore_every=3)
    dataset = load_dataset(root)
    assert dataset.channels == ["CT", "CT smoothed"] and dataset.ignore_value == 3
    assert dataset.cases[0].images == (root / "imagesTr" / "case_000.nii.gz",)
    image, labels = read_case(dataset.cases[0], dataset)
    assert image.array.shape[0] == 2
    assert not np.array_equal(image.array[0], image.array[1])  # two different channels, in order
    assert image.array[1].std() < image.array[0].std()  # the second is the smoothed one
    ignored = labels.array == IGNORE
    assert ignored[1].all() and not ignored[0].any()  # slices 1, 2 of every 3 carry the ignore label
    target, weight = targets_from_labels(__import__("torch").from_numpy(labels.array))
    assert float(weight[1].sum()) == 0 and int(target.min()) == 0


def test_nrrd_files_are_read(tmp_path, data_dir):
    dataset = load_dataset(make_msd_dataset(tmp_path / "nrrd", data_dir, cases=2, suffix=".nrrd"))
    assert len(dataset.cases) == 2 and dataset.cases[0].label.suffix == ".nrrd"
    image, labels = read_case(dataset.cases[1], dataset)
    assert image.shape_kji == labels.shape_kji


def _copy(source, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(source, target)
    return target


def _edit_json(root, **changes):
    spec = json.loads((root / "dataset.json").read_text())
    spec.update(changes)
    (root / "dataset.json").write_text(json.dumps(spec))


def test_missing_parts_are_named(nnunet_dataset, tmp_path):
    root = _copy(nnunet_dataset, tmp_path)
    (root / "dataset.json").unlink()
    with pytest.raises(SegNetsError, match="missing dataset.json"):
        load_dataset(root)
    with pytest.raises(SegNetsError, match="no such dataset folder"):
        load_dataset(tmp_path / "nowhere")


def test_dataset_json_given_for_the_folder_is_named(nnunet_dataset, tmp_path):
    root = _copy(nnunet_dataset, tmp_path)
    with pytest.raises(SegNetsError, match=r"dataset\.json: is a file, not the dataset folder"):
        load_dataset(root / "dataset.json")


def test_label_without_image_and_image_without_label(nnunet_dataset, tmp_path):
    root = _copy(nnunet_dataset, tmp_path)
    (root / "imagesTr" / "case_001_0000.nii.gz").unlink()
    with pytest.raises(SegNetsError, match=r"case_001\.nii\.gz: no image for this case"):
        load_dataset(root)
    root2 = _copy(nnunet_dataset, tmp_path / "second")
    (root2 / "labelsTr" / "case_002.nii.gz").unlink()
    with pytest.raises(SegNetsError, match=r"image\(s\) without a label.*case_002_0000"):
        load_dataset(root2)


def test_bad_dataset_json_labels_and_channels(nnunet_dataset, tmp_path):
    root = _copy(nnunet_dataset, tmp_path)
    _edit_json(root, labels={"background": 0, "liver": 1, "spleen": 3})
    with pytest.raises(SegNetsError, match="must be 1..2 without gaps"):
        load_dataset(root)
    _edit_json(root, labels={"liver": 1})
    with pytest.raises(SegNetsError, match="background with value 0"):
        load_dataset(root)
    _edit_json(root, labels={"background": 0, "liver": 1, "spleen": 2}, channel_names={"0": "CT", "1": "T2"})
    with pytest.raises(SegNetsError, match=r"case case_000 lacks channel 1 \(T2\): no case_000_0001 image"):
        load_dataset(root)
    _edit_json(root, labels={"background": 0, "liver": 1, "spleen": 2, "tumour": 2}, channel_names={"0": "CT"})
    with pytest.raises(SegNetsError, match=r"labels \['spleen', 'tumour'\] share the value 2"):
        load_dataset(root)  # one name was dropped silently, and the card called the spleen a tumour
    _edit_json(root, labels={"0": "background", "1": "organ", "2": "organ"})
    with pytest.raises(SegNetsError, match="label name 'organ' is given twice"):
        load_dataset(root)
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(SegNetsError, match="not valid JSON"):
        load_dataset(root)


def test_an_error_shows_a_huge_value_of_dataset_json_shortened(nnunet_dataset, tmp_path):
    """A label entry of thousands of numbers is named in a short sentence, not echoed whole (found by fuzzing)."""
    root = _copy(nnunet_dataset, tmp_path)
    huge = {"x" * 5000: None, "0": [1e14] * 5000}
    _edit_json(root, labels={"background": 0, "liver": 1, "spleen": 2, ":": huge})
    with pytest.raises(SegNetsError, match="label entry ':'") as raised:
        load_dataset(root)
    assert len(str(raised.value)) < len(str(root)) + 400
    _edit_json(
        root, labels={"background": 0, "liver": 1, "spleen": 2}, channel_names={str(i): "CT" for i in range(1, 3000)}
    )
    with pytest.raises(SegNetsError, match="without gaps") as raised:
        load_dataset(root)
    assert len(str(raised.value)) < len(str(root)) + 400


def test_undeclared_label_values_and_size_mismatch(nnunet_dataset, tmp_path):
    root = _copy(nnunet_dataset, tmp_path)
    _edit_json(root, labels={"background": 0, "liver": 1})
    dataset = load_dataset(root)
    with pytest.raises(SegNetsError, match=r"case_000\.nii\.gz: label value\(s\) \[2\]"):
        read_case(dataset.cases[0], dataset)
    label_path = root / "labelsTr" / "case_003.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(label_path))[:, :, :8], str(label_path))
    with pytest.raises(SegNetsError, match=r"case_003_0000\.nii\.gz: size .* differs from its label"):
        load_dataset(root)


def _prepared(dataset, patch, rng):
    cases = []
    for case in dataset.cases:
        image, labels = read_case(case, dataset)
        cases.append(PreparedCase.build(case.name, image.array, labels.array, 2, patch, rng))
    return cases


@pytest.mark.parametrize("part", ["image", "label"])
def test_a_case_file_cut_short_after_listing_is_refused_when_read(nnunet_dataset, tmp_path, part):
    """A file that changes between load_dataset and read_case (a copy still being written): ITK fills a gzip stream
    that ends early with zeros, silently; read_case refuses it, naming the file."""
    root = tmp_path / "copy"
    shutil.copytree(nnunet_dataset, root)
    dataset = load_dataset(root)
    case = dataset.cases[0]
    path = case.images[0] if part == "image" else case.label
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SegNetsError, match=f"{path.name}: the compressed file is damaged or cut short"):
        read_case(case, dataset)


def test_patch_sampler_foreground_share_and_padding(nnunet_dataset):
    dataset = load_dataset(nnunet_dataset)
    rng = np.random.default_rng(0)
    patch = (16, 24, 24)
    cases = _prepared(dataset, patch, rng)
    short = next(case for case in cases if case.name == "case_003")  # 15 slices: padded to 16 with IGNORE
    assert short.labels.shape[0] == 16 and (short.labels[15] == IGNORE).all()
    images, labels = CasePatchSampler(cases, patch, foreground_share=1.0).sample(12, rng)
    assert tuple(images.shape) == (12, 1, 16, 24, 24) and tuple(labels.shape) == (12, 16, 24, 24)
    assert all((labels[i] > 0).any() for i in range(12))
    # the spleen is small: class-balanced foreground sampling still reaches it often
    assert sum(bool((labels[i] == 2).any()) for i in range(12)) >= 3
    _, uniform = CasePatchSampler(cases, (4, 4, 4), foreground_share=0.0).sample(40, np.random.default_rng(1))
    assert 0 < sum(bool((uniform[i] > 0).any()) for i in range(40)) < 40


def test_split_and_shard_are_disjoint_and_complete(nnunet_dataset):
    dataset = load_dataset(nnunet_dataset)
    train, validation = split_cases(dataset.cases, 0.25)
    assert len(validation) == 1 and not set(train) & set(validation) and len(train) + len(validation) == 4
    assert split_cases(list(reversed(dataset.cases)), 0.25) == (train, validation)
    items = list(range(7))
    shares = [shard(items, rank, 3) for rank in range(3)]
    assert sorted(sum(shares, [])) == items and [len(s) for s in shares] == [3, 2, 2]
    assert shard(items) == items  # a single process gets everything


@pytest.mark.parametrize(
    ("folder", "name", "twin"), [("imagesTr", "case_001_0000", ".nii"), ("labelsTr", "case_001", ".nrrd")]
)
def test_a_case_in_two_files_is_refused(nnunet_dataset, tmp_path, folder, name, twin):
    """case.nii beside case.nii.gz (an uncompressed copy left behind): ITK reads the .nii even when asked for the
    .nii.gz, so training on either silently is unsafe; both files are named."""
    root = _copy(nnunet_dataset, tmp_path)
    original = root / folder / f"{name}.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(original)) * 0, str(root / folder / f"{name}{twin}"))
    with pytest.raises(SegNetsError, match="are the same case in two files") as raised:
        load_dataset(root)
    assert f"{name}.nii.gz" in str(raised.value) and f"{name}{twin} " in str(raised.value)


@pytest.mark.parametrize("change", ["origin", "direction"])
def test_a_channel_off_its_labels_grid_is_refused(tmp_path, data_dir, change):
    """A second channel moved or flipped against the label (an unregistered T2) was stacked with the first one
    unchecked; the header check names its file before any case is read."""
    root = make_msd_dataset(tmp_path / "two", data_dir, cases=2, channels=2)
    path = root / "imagesTr" / "case_001_0001.nii.gz"
    image = sitk.ReadImage(str(path))
    if change == "origin":
        image.SetOrigin([value + 30.0 for value in image.GetOrigin()])
    else:
        direction = list(image.GetDirection())
        direction[0], direction[4] = -direction[0], -direction[4]
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    with pytest.raises(SegNetsError, match=r"case_001_0001\.nii\.gz: its origin or axis directions differ"):
        load_dataset(root)


def test_a_label_off_its_images_grid_is_refused_before_reading(nnunet_dataset, tmp_path):
    root = _copy(nnunet_dataset, tmp_path)
    path = root / "labelsTr" / "case_002.nii.gz"
    label = sitk.ReadImage(str(path))
    label.SetOrigin([value - 20.0 for value in label.GetOrigin()])
    sitk.WriteImage(label, str(path))
    with pytest.raises(SegNetsError, match=r"case_002_0000\.nii\.gz: its origin or axis directions differ"):
        load_dataset(root)


def test_a_listed_case_without_files_and_a_wrong_num_training_are_refused(tmp_path, data_dir):
    """A case lost in copying (both its files gone) was left out silently although dataset.json lists it."""
    root = make_msd_dataset(tmp_path / "msd", data_dir, cases=3, layout="msd")
    for path in (root / "imagesTr" / "case_002.nii.gz", root / "labelsTr" / "case_002.nii.gz"):
        path.unlink()
    with pytest.raises(SegNetsError, match=r"lists training case '\./labelsTr/case_002\.nii\.gz'.*no case_002 label"):
        load_dataset(root)
    spec = json.loads((root / "dataset.json").read_text())
    _edit_json(root, training=spec["training"][:2])
    with pytest.raises(SegNetsError, match=r"dataset\.json: numTraining is 3, but labelsTr holds 2 case\(s\)"):
        load_dataset(root)
    _edit_json(root, numTraining=2)
    assert [case.name for case in load_dataset(root).cases] == ["case_000", "case_001"]


def test_dataset_json_with_a_byte_order_mark_is_read(nnunet_dataset, tmp_path):
    """Windows editors (Notepad, PowerShell 5's Out-File) start UTF-8 files with a byte order mark."""
    root = _copy(nnunet_dataset, tmp_path)
    spec = root / "dataset.json"
    spec.write_bytes(b"\xef\xbb\xbf" + spec.read_bytes())
    assert load_dataset(root).labels == {1: "liver", 2: "spleen"}
