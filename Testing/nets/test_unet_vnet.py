"""3D U-Net and V-Net: paper parameter counts, paper shapes, any input size, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.nets import build
from SegNetsLib.nets.unet3d import caffe_parameter_count


def _total(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _assert_every_parameter_gets_a_gradient(net: nn.Module, x: torch.Tensor) -> None:
    logits = net(x).logits
    torch.manual_seed(3)
    (logits * torch.randn_like(logits)).sum().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


# ---- 3D U-Net ---------------------------------------------------------------------------------------
def test_unet3d_paper_parameter_count_matches_the_paper_exactly():
    net = build("unet3d", 3, 3, preset="paper")
    assert caffe_parameter_count(net) == 19_069_955  # paper: "The architecture has 19069955 parameters"
    assert _total(net) == 19_074_627  # + PyTorch BN gamma/beta (golden README alternative)


def test_unet3d_paper_layers_are_valid_convs_and_channel_keeping_upconvs():
    net = build("unet3d", 3, 3, preset="paper")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d) and m.kernel_size == (3, 3, 3)]
    assert len(convs) == 14 and all(m.padding == (0, 0, 0) and m.bias is not None for m in convs)
    assert [m.out_channels for m in convs[:8]] == [32, 64, 64, 128, 128, 256, 256, 512]
    ups = [m for m in net.modules() if isinstance(m, nn.ConvTranspose3d)]
    assert [(m.in_channels, m.out_channels, m.bias) for m in ups] == [
        (512, 512, None),
        (256, 256, None),
        (128, 128, None),
    ]
    assert sum(isinstance(m, nn.BatchNorm3d) for m in net.modules()) == 14


def test_unet3d_paper_tile_132x132x116_gives_44x44x28_valid_output():
    with torch.device("meta"):  # shapes only, no arithmetic
        net = build("unet3d", 3, 3, preset="paper", overlap_tile=False)
        assert net(torch.empty(1, 3, 132, 132, 116)).logits.shape == (1, 3, 44, 44, 28)
    assert net.margin == 44
    assert [net.valid_output_size(s) for s in (132, 116, 100, 133)] == [44, 28, 12, None]
    assert net.valid_input_size(44) == 132 and net.valid_input_size(40) == 132


def test_unet3d_valid_mode_rejects_a_size_it_cannot_pool():
    net = build("unet3d", 1, 2, preset="paper", base_channels=1, overlap_tile=False)
    with pytest.raises(SegNetsError, match="not valid"):
        net(torch.zeros(1, 1, 93, 92, 92))


def test_unet3d_paper_overlap_tile_is_the_valid_net_on_the_mirrored_input():
    torch.manual_seed(0)
    net = build("unet3d", 1, 2, preset="paper", base_channels=1).eval()
    x = torch.randn(1, 1, 9, 6, 7)
    with torch.no_grad():
        tiled = net(x).logits
        net.overlap_tile = False
        needed = [net.valid_input_size(s) for s in x.shape[2:]]
        pads = [(44, n - s - 44) for n, s in zip(needed, x.shape[2:])]
        mirrored = torch.from_numpy(np.pad(x.numpy(), [(0, 0), (0, 0)] + pads, mode="reflect"))
        valid = net(mirrored).logits
    assert tiled.shape == (1, 2, 9, 6, 7)
    assert torch.allclose(tiled, valid[:, :, :9, :6, :7])


@pytest.mark.parametrize(
    "preset, overrides",
    [("default", {"base_channels": 2}), pytest.param("paper", {"base_channels": 1}, marks=pytest.mark.slow)],
)
def test_unet3d_odd_input_gives_logits_at_input_size_and_gradients_everywhere(preset, overrides):
    torch.manual_seed(0)
    net = build("unet3d", 1, 3, preset=preset, **overrides)
    x = torch.randn(1, 1, 19, 23, 17)
    assert net(x).logits.shape == (1, 3, 19, 23, 17)
    _assert_every_parameter_gets_a_gradient(net, x)


def test_unet3d_default_width_depth_and_norm_are_configurable():
    net = build("unet3d", 2, 4, base_channels=3, levels=3, norm="batch")
    assert sum(isinstance(m, nn.BatchNorm3d) for m in net.modules()) == 10
    assert len(net.ups) == 2 and net.head.in_channels == 6
    assert net(torch.randn(2, 2, 5, 9, 6)).logits.shape == (2, 4, 5, 9, 6)
    with pytest.raises(SegNetsError, match="norm"):
        build("unet3d", 1, 2, norm="group")


# ---- V-Net ------------------------------------------------------------------------------------------
def test_vnet_paper_parameter_count_matches_the_official_prototxt_exactly():
    net = build("vnet", 1, 2, preset="paper")
    assert _total(net) == 61_982_682
    kinds = [type(m) for m in net.modules()]
    assert (kinds.count(nn.Conv3d), kinds.count(nn.ConvTranspose3d), kinds.count(nn.PReLU)) == (23, 4, 26)
    assert all(m.padding == (2, 2, 2) for m in net.modules() if isinstance(m, nn.Conv3d) and m.kernel_size == (5, 5, 5))


def test_vnet_paper_figure_depths_give_the_figure_count():
    assert _total(build("vnet", 1, 2, preset="paper", depths="figure")) == 65_183_258
    with pytest.raises(SegNetsError, match="depths"):
        build("vnet", 1, 2, depths="mattmacy")


def test_vnet_paper_tile_shape_on_meta_device():
    with torch.device("meta"):
        net = build("vnet", 1, 2, preset="paper")
        assert net(torch.empty(1, 1, 64, 128, 128)).logits.shape == (1, 2, 64, 128, 128)


def test_vnet_first_stage_adds_the_input_repeated_to_its_width():
    net = build("vnet", 3, 2, base_channels=8)
    stage = net.encoders[0]
    with torch.no_grad():
        stage.convs[0].weight.zero_()
        stage.convs[0].bias.zero_()
    x = torch.randn(1, 3, 4, 4, 4)
    tiled = torch.cat([x, x, x[:, :2]], dim=1)  # 3 channels repeated to 8
    assert torch.allclose(stage(x, residual=tiled), stage.prelus[-1](tiled))
    assert torch.equal(x.repeat(1, 3, 1, 1, 1)[:, :8], tiled)


@pytest.mark.parametrize("in_channels, levels, size", [(1, 5, (17, 9, 11)), (2, 3, (19, 23, 17))])
def test_vnet_odd_input_gives_logits_at_input_size_and_gradients_everywhere(in_channels, levels, size):
    torch.manual_seed(0)
    net = build("vnet", in_channels, 3, base_channels=2, levels=levels)
    x = torch.randn(1, in_channels, *size)
    assert net(x).logits.shape == (1, 3, *size)
    _assert_every_parameter_gets_a_gradient(net, x)


def test_vnet_levels_keep_matching_encoder_and_decoder_stages():
    net = build("vnet", 1, 2, base_channels=4, levels=3, depths="figure")
    assert [len(s.convs) for s in net.encoders] == [1, 2, 3]
    assert [len(s.convs) for s in net.decoders] == [2, 1]
    with pytest.raises(SegNetsError, match="levels"):
        build("vnet", 1, 2, levels=6)


@pytest.mark.parametrize("name", ["unet3d", "vnet"])
def test_wrong_input_channels_and_unknown_options_are_segnets_errors(name):
    net = build(name, 2, 2, base_channels=2)
    with pytest.raises(SegNetsError, match="expected \\(N, 2, D, H, W\\)"):
        net(torch.zeros(1, 1, 8, 8, 8))
    with pytest.raises(SegNetsError, match="invalid"):
        build(name, 1, 2, widht=3)
    with pytest.raises(SegNetsError, match=r"option '\\n': not an argument name\.$") as raised:
        build(name, 1, 2, **{"\n": 3})  # a model card's build_args may hold any key (found by fuzzing)
    assert "\n" not in str(raised.value)
