"""Training each architecture on a tiny real dataset: the loss falls, checkpoints, logs and a model card appear."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from msd_builder import make_msd_dataset

from SegNetsLib import nets
from SegNetsLib.cli import main as segnets
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.losses import objective
from SegNetsLib.models.library import ModelLibrary, load
from SegNetsLib.nets.outputs import SegmentationOutput
from SegNetsLib.training.checkpoint import load_checkpoint
from SegNetsLib.training.data import prepare_case
from SegNetsLib.training.dataset import IGNORE, CasePatchSampler, PreparedCase, load_dataset, targets_from_labels
from SegNetsLib.training.schedule import plan_stages, poly_learning_rate
from SegNetsLib.training.trainer import BEST, LAST, TrainOptions, train
from SegNetsLib.training.validation import case_dice

# tiny widths; learning rates high enough to see the loss fall within a few dozen iterations
TINY = {
    "unet3d": ({"base_channels": 4, "levels": 3}, 1e-2),
    "vnet": ({"base_channels": 4}, 1e-2),
    "conresnet": ({"base_channels": 8}, 3e-3),
    "runet": ({"base_channels": 4}, 3e-3),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, data_dir):
    return make_msd_dataset(tmp_path_factory.mktemp("train") / "Tiny", data_dir, cases=4)


def _options(tmp_path, architecture: str, **changes) -> TrainOptions:
    build_args, learning_rate = TINY[architecture]
    values = dict(
        save_model=f"tiny {architecture}",
        epochs=3,
        iterations_per_epoch=8,
        batch_size=2,
        patch_size=(16, 32, 32),
        learning_rate=learning_rate,
        device="cpu",
        augment=False,
        foreground_share=0.5,
        work_dir=tmp_path / "work",
        build_args=build_args,
    )
    values.update(changes)
    return TrainOptions(**values)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fixed_batch_loss(net, card, dataset_dir, architecture: str) -> float:
    """The architecture's objective on 4 fixed patches (half centred on foreground), network in eval mode."""
    dataset = load_dataset(dataset_dir)
    rng = np.random.default_rng(123)
    cases = [prepare_case(case, dataset, card, (16, 32, 32), rng) for case in dataset.cases]
    images, labels = CasePatchSampler(cases, (16, 32, 32), foreground_share=0.5).sample(4, rng)
    target, weight = targets_from_labels(labels)
    net.eval()
    with torch.no_grad():
        return float(objective(architecture, net(images), target, weight))


@pytest.mark.parametrize(
    "architecture",
    [
        "unet3d",
        pytest.param("vnet", marks=pytest.mark.slow),
        pytest.param("conresnet", marks=pytest.mark.slow),
        "runet",
    ],
)
def test_each_architecture_learns(architecture, dataset, tmp_path, model_library):
    build_args, _ = TINY[architecture]
    torch.manual_seed(0)  # the trainer seeds the same way before building its network
    untrained = nets.build(architecture, 1, 3, **build_args)
    result = train(dataset, architecture, _options(tmp_path, architecture, epochs=2, iterations_per_epoch=12))
    losses = result.iteration_losses
    assert len(losses) == 24 and all(np.isfinite(losses))
    if architecture == "runet":
        assert [row["stage"] for row in result.history] == ["global", "full"]  # the global encoder stage first
    before = _fixed_batch_loss(untrained, result.card, dataset, architecture)
    after = _fixed_batch_loss(result.net, result.card, dataset, architecture)
    assert after < 0.95 * before, (before, after, losses)  # deterministic: seeded init, patches and order
    # the model is in the library, loadable, with the dataset and metrics on its card
    net, card = load("tiny-" + architecture)
    assert card.architecture == architecture and [label.name for label in card.labels] == ["liver", "spleen"]
    trained_on = card.provenance.trained_on[0]
    assert trained_on["dataset"] == "TinyAbdomen"
    assert (trained_on["training_cases"], trained_on["validation_cases"]) == (3, 1)
    assert set(card.provenance.validation) <= {"liver", "spleen"}
    assert card.provenance.iterations == 24
    output = net(torch.zeros(1, 1, 16, 32, 32))
    assert output.logits.shape == (1, 3, 16, 32, 32)
    for name in (LAST, BEST, "log.csv", "log.json", "curves.png"):
        assert (result.work_dir / name).is_file(), name


def test_validation_dice_and_logs(dataset, tmp_path, model_library):
    result = train(dataset, "unet3d", _options(tmp_path, "unet3d", epochs=3, iterations_per_epoch=2, augment=True))
    rows = json.loads((result.work_dir / "log.json").read_text())["epochs"]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert all(0.0 <= row["dice"]["liver"] <= 1.0 for row in rows)
    best = load_checkpoint(result.work_dir / BEST)
    means = {row["epoch"]: row["dice_mean"] for row in rows if row["dice_mean"] is not None}
    assert means[best.state["epoch"]] == max(means.values())  # best = highest mean validation Dice
    header = (result.work_dir / "log.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,stage,learning_rate,train_loss,dice_liver,dice_spleen,dice_mean")
    learning_rates = [row["learning_rate"] for row in rows]
    assert learning_rates == sorted(learning_rates, reverse=True)  # poly decay


class _Identity(torch.nn.Module):
    """A network whose logits are its input: fed one-hot labels it predicts them exactly."""

    def forward(self, x):
        return SegmentationOutput(logits=x)


def test_validation_dice_is_scored_on_labeled_voxels_only():
    labels = np.zeros((16, 32, 32), np.int16)
    labels[4:12, 8:24, 8:24] = 1  # 8 x 16 x 16 = 2048 voxels of class 1
    labels[0:2] = IGNORE
    prediction = labels.clip(min=0).astype(np.int64)
    prediction[4:12, 8:24, 8:16] = 0  # half of class 1 missed: Dice = 2*1024 / (1024 + 2048) = 2/3
    prediction[0:2] = 1  # wrong, but on ignored voxels: does not count
    image = np.moveaxis(np.eye(3, dtype=np.float32)[prediction], -1, 0)
    case = PreparedCase("synthetic", image, labels, [])
    dice = case_dice(_Identity(), case, 3, (16, 32, 32), torch.device("cpu"), amp=False)
    assert dice[0] == pytest.approx(2 / 3, abs=1e-6)
    assert np.isnan(dice[1])  # class 2 is absent from the reference: undefined, left out of the mean


def test_poly_schedule_and_runet_stages():
    assert poly_learning_rate(1.0, 0, 100) == 1.0
    assert poly_learning_rate(1.0, 50, 100) == pytest.approx(0.5**0.9)
    assert 0 < poly_learning_rate(1.0, 99, 100) < 0.02
    stages = plan_stages("runet", 90)
    assert [(s.name, s.start, s.end) for s in stages] == [("global", 0, 40), ("full", 40, 90)]
    assert [(s.name, s.end) for s in plan_stages("vnet", 5)] == [("full", 5)]


def test_refuses_to_overwrite_a_run_and_bad_datasets(dataset, tmp_path, model_library):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / LAST).write_bytes(b"")
    with pytest.raises(SegNetsError, match="pass --resume"):
        train(dataset, "unet3d", _options(tmp_path, "unet3d"))
    with pytest.raises(SegNetsError, match="no such dataset folder"):
        train(tmp_path / "missing", "unet3d", _options(tmp_path, "unet3d"))


def test_refuses_a_dataset_without_any_foreground(tmp_path, model_library):
    root = tmp_path / "Empty"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(
        json.dumps({"channel_names": {"0": "MR"}, "labels": {"background": 0, "liver": 1}})
    )
    for name in ("a", "b"):
        sitk.WriteImage(
            sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(16, 32, 32)).astype(np.float32)),
            str(root / "imagesTr" / f"{name}_0000.nii.gz"),
        )
        sitk.WriteImage(
            sitk.GetImageFromArray(np.zeros((16, 32, 32), np.uint8)), str(root / "labelsTr" / f"{name}.nii.gz")
        )
    with pytest.raises(SegNetsError, match="labelsTr: no training case holds a voxel of liver"):
        train(root, "unet3d", _options(tmp_path, "unet3d"))
    assert ModelLibrary(model_library).list() == []


def test_refuses_a_label_no_training_case_holds(dataset, tmp_path, model_library):
    """A label dataset.json names but no case holds was trained for nothing and named on the model's card."""
    root = tmp_path / "Extra"
    shutil.copytree(dataset, root)
    spec = json.loads((root / "dataset.json").read_text())
    spec["labels"]["kidney"] = 3
    (root / "dataset.json").write_text(json.dumps(spec))
    with pytest.raises(SegNetsError, match="labelsTr: no training case holds a voxel of kidney; remove it"):
        train(root, "unet3d", _options(tmp_path, "unet3d", epochs=1, iterations_per_epoch=1))
    assert ModelLibrary(model_library).list() == []


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--learning-rate", "nan"], "'nan' is not a positive, finite learning rate"),
        (["--learning-rate", "-1"], "'-1' is not a positive, finite learning rate"),
        (["--time-limit", "inf"], "'inf' is not a positive, finite duration"),
        (["--save-model", " "], "the model needs a name"),
        (["--seed", "-1"], "-1 is not a seed in 0 .. 4294967295"),
        (["--work-dir", "{file}"], "is a file, not a folder"),
        (["--base-channels", "100000"], "would take"),
    ],
)
def test_segnets_train_refuses_unusable_arguments_before_training(
    dataset, tmp_path, model_library, capsys, extra, problem
):
    (tmp_path / "afile").write_text("x")
    arguments = ["train", "--dataset", str(dataset), "--save-model", "m", "--epochs", "1", "--iterations", "1"]
    arguments += [e.format(file=tmp_path / "afile") for e in extra]
    try:
        code = segnets(arguments)
    except SystemExit as exit:  # argparse's refusal of an option's value
        code = exit.code
    assert code in (1, 2) and problem in capsys.readouterr().err
    assert ModelLibrary(model_library).list() == []


def test_segnets_train_command_adds_a_model(dataset, tmp_path, model_library, capsys):
    code = segnets(
        [
            "train",
            "--dataset",
            str(dataset),
            "--model",
            "unet3d",
            "--save-model",
            "Tiny CLI",
            "--epochs",
            "1",
            "--iterations",
            "2",
            "--patch-size",
            "16",
            "32",
            "32",
            "--base-channels",
            "4",
            "--device",
            "cpu",
            "--work-dir",
            str(tmp_path / "cli"),
            "--no-augment",
        ]
    )
    assert code == 0
    assert "Saved tiny-cli 1.0.0" in capsys.readouterr().out
    assert [entry.card.id for entry in ModelLibrary().list()] == ["tiny-cli"]
    # a second run under the same name gets a new version, never overwriting the first
    code = segnets(
        [
            "train",
            "--dataset",
            str(dataset),
            "--model",
            "tiny-cli",
            "--save-model",
            "Tiny CLI",
            "--epochs",
            "1",
            "--iterations",
            "2",
            "--device",
            "cpu",
            "--work-dir",
            str(tmp_path / "cli2"),
            "--no-augment",
        ]
    )
    assert code == 0
    versions = sorted(entry.card.version for entry in ModelLibrary().list())
    assert versions == ["1.0.0", "2.0.0"]
    card = ModelLibrary().card("tiny-cli", "2.0.0")
    assert card.provenance.base_model_id == "tiny-cli" and card.patch_size == (16, 32, 32)


def test_time_limit_shorter_than_one_iteration_still_gives_a_model(dataset, tmp_path, model_library):
    result = train(
        dataset, "unet3d", _options(tmp_path, "unet3d", epochs=None, time_limit_s=1e-3, iterations_per_epoch=2)
    )
    assert [row["epoch"] for row in result.history] == [1]  # one iteration already exceeds the limit
    assert load_checkpoint(result.work_dir / LAST).state["epochs"] == 1
    assert result.model_path is not None and result.card.provenance.iterations == 1  # the epoch was cut short


@pytest.mark.slow
def test_trained_model_segments_and_fine_tunes(dataset, tmp_path, model_library, capsys):
    assert (
        segnets(
            [
                "train",
                "--dataset",
                str(dataset),
                "--save-model",
                "Tiny FT",
                "--epochs",
                "1",
                "--iterations",
                "2",
                "--patch-size",
                "16",
                "32",
                "32",
                "--base-channels",
                "4",
                "--build-args",
                '{"levels": 3}',
                "--device",
                "cpu",
                "--work-dir",
                str(tmp_path / "work"),
                "--no-augment",
            ]
        )
        == 0
    )
    image = dataset / "imagesTr" / "case_000_0000.nii.gz"
    output = tmp_path / "case_000.seg.nrrd"
    assert (
        segnets(
            [
                "segment",
                "--model",
                "tiny-ft",
                "--input",
                str(image),
                "--output",
                str(output),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    assert output.is_file()
    assert (
        segnets(
            [
                "finetune",
                "--model",
                "tiny-ft",
                "--input",
                str(image),
                "--annotations",
                str(dataset / "labelsTr" / "case_000.nii.gz"),
                "--iterations",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    # after 2 iterations either model may validate better (thread count changes the float sums); the library
    # must match what the command said it kept: a new version for the fine-tuned model, nothing for the base
    kept_finetuned = "kept the fine-tuned model" in capsys.readouterr().err
    expected = ["1.0.0", "1.1.0"] if kept_finetuned else ["1.0.0"]
    assert sorted(entry.card.version for entry in ModelLibrary().list()) == expected


def test_partially_labeled_two_channel_msd_dataset(tmp_path, data_dir, model_library):
    root = make_msd_dataset(tmp_path / "Task02", data_dir, cases=3, layout="msd", channels=2, ignore_every=2)
    result = train(root, "unet3d", _options(tmp_path, "unet3d", epochs=1, iterations_per_epoch=2))
    card = result.card
    assert [channel.name for channel in card.in_channels] == ["CT", "CT smoothed"]
    assert card.normalization.kind == "zscore"  # several channels: z-score per channel, not a CT window
    assert all(np.isfinite(result.iteration_losses))
    assert load("tiny-unet3d")[0](torch.zeros(1, 2, 16, 32, 32)).logits.shape == (1, 3, 16, 32, 32)
