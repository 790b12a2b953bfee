"""Importing bare weights: safetensors and weights-only .pt/.pth, and refusing pickles that carry code."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import safetensors.torch
import torch
from model_helpers import TINY, outputs, snapshot, tiny_model

from SegNetsLib import nets
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models.library import ModelLibrary
from SegNetsLib.models.store import save


class CreatesFile:
    """Unpickling this object opens ``marker`` for writing, i.e. creates a file: code run by a model file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def library(tmp_path) -> ModelLibrary:
    library = ModelLibrary(tmp_path / "lib")
    library.add(*tiny_model(seed=7, id="kept"))
    return library


BARE = {"architecture": "unet3d", "labels": ["liver", "tumor"], "build_args": TINY}


def test_bare_safetensors_and_pt_import_with_architecture_named(tmp_path, library):
    net, _ = tiny_model()
    state = {name: t.clone() for name, t in net.state_dict().items()}
    safetensors.torch.save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"epoch": 12, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pth")

    entry = library.import_path(tmp_path / "w.safetensors", id="liver-a", **BARE)
    assert entry.card.build_args == {"preset": "default", **TINY} and entry.card.num_classes == 3
    assert "sha256" in entry.card.description
    entry = library.import_path(tmp_path / "ddp.pth", id="liver-b", in_channels=1, **BARE)
    assert entry.path == library.root / "liver-b" / "1.0.0"
    for model_id in ("liver-a", "liver-b"):
        loaded, _ = library.load(model_id)
        assert torch.equal(outputs(loaded), outputs(net))


def test_bare_weights_need_a_known_architecture_and_matching_shapes(tmp_path, library):
    net, _ = tiny_model()
    safetensors.torch.save_file(dict(net.state_dict()), str(tmp_path / "w.safetensors"))
    before = snapshot(library.root)
    with pytest.raises(SegNetsError, match="bare weights need their architecture named"):
        library.import_path(tmp_path / "w.safetensors", labels=["liver"])
    with pytest.raises(SegNetsError, match="one of unet3d, vnet, conresnet, runet; .unet2d. is unknown"):
        library.import_path(tmp_path / "w.safetensors", **{**BARE, "architecture": "unet2d"})
    with pytest.raises(SegNetsError, match="name the labels"):
        library.import_path(tmp_path / "w.safetensors", architecture="unet3d")
    with pytest.raises(
        SegNetsError,
        match=r"w.safetensors has tensor '.*' of shape \(2, 1, 3, 3, 3\) where \(2, 2, 3, 3, 3\) is expected for unet3d \(preset 'default', 2 input channels",
    ):
        library.import_path(tmp_path / "w.safetensors", in_channels=2, **BARE)
    with pytest.raises(SegNetsError, match="where .* is expected for unet3d .* 2 classes"):
        library.import_path(tmp_path / "w.safetensors", **{**BARE, "labels": ["liver"]})
    (tmp_path / "w.ckpt").write_bytes(b"whatever")
    with pytest.raises(SegNetsError, match=r"cannot import a \.ckpt file"):
        library.import_path(tmp_path / "w.ckpt", **BARE)
    folder = save(net, tiny_model()[1], tmp_path / "folder")
    with pytest.raises(SegNetsError, match="carries its own card; architecture applies only to bare weights"):
        library.import_path(folder, architecture="vnet")
    assert snapshot(library.root) == before


@pytest.mark.parametrize(
    "writer, reason",
    [
        ("pickle-2", "it asks to import and call "),
        ("pickle-4", "Unsupported operand"),
        ("torch.save", "it asks to import and call io.open"),
    ],
)
def test_pickle_carrying_code_is_refused_and_never_runs(tmp_path, library, writer, reason):
    net, _ = tiny_model()
    control, marker = tmp_path / "control_ran.txt", tmp_path / "attack_ran.txt"
    # the control proves the payload is real: plain unpickling creates the file
    pickle.loads(pickle.dumps({"weight": torch.zeros(2), "payload": CreatesFile(control)}))
    assert control.exists()

    evil = {**net.state_dict(), "payload": CreatesFile(marker)}
    path = tmp_path / "evil.pth"
    if writer.startswith("pickle"):
        path.write_bytes(pickle.dumps(evil, protocol=int(writer[-1])))
    else:
        torch.save(evil, path)
    before = snapshot(library.root)
    with pytest.raises(SegNetsError) as caught:
        library.import_path(path, **BARE)
    message = str(caught.value)
    assert message.startswith("evil.pth: refused, it is not a plain PyTorch state dict of tensors")
    assert reason in message and "never runs code" in message
    assert not marker.exists()
    assert snapshot(library.root) == before


def test_pickled_whole_network_is_refused(tmp_path, library):
    net, _ = tiny_model()
    torch.save(net, tmp_path / "whole.pt")  # a pickled nn.Module: loading it would import and run classes
    with pytest.raises(SegNetsError, match="whole.pt: refused, it is not a plain PyTorch state dict"):
        library.import_path(tmp_path / "whole.pt", **BARE)
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pt")
    with pytest.raises(SegNetsError, match="list.pt: entry 'weights' is a list, not a tensor"):
        library.import_path(tmp_path / "list.pt", **BARE)


def test_official_checkpoints_import_through_load_official(shared_dir, tmp_path):
    """The authors' ConResNet / 3D RU-Net state dicts (golden, official key names) become library models."""
    golden = shared_dir / "golden"
    library = ModelLibrary(tmp_path / "lib")
    entry = library.import_path(
        golden / "conresnet_quarter_state.pt",
        architecture="conresnet",
        official=True,
        build_args={"shape": [16, 64, 48]},
    )
    card = entry.card
    assert card.build_args == {"preset": "paper", "base_channels": 8, "shape": [16, 64, 48]}
    assert card.multi_label and [l.name for l in card.labels] == ["enhancing tumor", "whole tumor", "tumor core"]
    assert [c.name for c in card.in_channels] == ["FLAIR", "T1", "T1ce", "T2"]
    loaded, _ = library.load(card.id)
    official = torch.load(golden / "conresnet_quarter_state.pt", weights_only=True)
    direct = nets.load_official("conresnet", official, shape=[16, 64, 48]).state_dict()
    assert list(loaded.state_dict()) == list(direct)
    assert all(torch.equal(tensor, direct[name]) for name, tensor in loaded.state_dict().items())

    entry = library.import_path(
        golden / "runet_mini_b16_state.pt", architecture="runet", official=True, id="runet-mini"
    )
    assert entry.card.build_args == {"preset": "paper", "base_channels": 16} and entry.card.num_classes == 2
    with pytest.raises(SegNetsError, match="the checkpoint predicts 2 classes but the labels give 3"):
        library.import_path(golden / "runet_mini_b16_state.pt", architecture="runet", official=True, labels=["a", "b"])
    with pytest.raises(SegNetsError, match="import it as official"):
        library.import_path(golden / "runet_mini_b16_state.pt", architecture="runet", labels=["tumor"])
    assert [e.id for e in library.list()] == [card.id, "runet-mini"]


@pytest.mark.parametrize(
    "stream",
    [b"\x80\x02\x86.", b"\x80\x02h\x05.", b"\x80\x02}s."],  # TUPLE2 on an empty stack, a missing memo, SETITEM short
)
def test_a_damaged_pickle_stream_is_refused_in_one_sentence(tmp_path, library, stream):
    path = tmp_path / "damaged.pt"
    path.write_bytes(stream)
    with pytest.raises(SegNetsError, match="damaged.pt: refused, it is not a plain PyTorch state dict"):
        library.import_path(path, **BARE)
