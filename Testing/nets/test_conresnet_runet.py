"""ConResNet and 3D RU-Net: paper parameter counts, any input size, gradients, output contract, RoI options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from SegNetsLib.core.box import Box
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.nets import build
from SegNetsLib.nets.conresnet import image_residual
from SegNetsLib.nets.outputs import ConResNetOutput, RUNetOutput
from SegNetsLib.nets.runet import RUNet


def _total(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _backward_all(tensors: list[torch.Tensor]) -> None:
    torch.manual_seed(3)
    sum((t * torch.randn_like(t)).sum() for t in tensors).backward()


def _without_gradient(net: nn.Module) -> list[str]:
    return [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


# ---- ConResNet ---------------------------------------------------------------------------------------
def test_conresnet_paper_parameter_counts():
    net = build("conresnet", 4, 3, preset="paper")
    assert _total(net) == 19_441_196  # official BraTS configuration, unused modules included
    assert _total(net) - sum(p.numel() for p in net.official_unused.parameters()) == 19_018_732
    assert net.shape == (80, 160, 160)


def test_conresnet_paper_quarter_width_uses_exactly_the_official_parameters():
    torch.manual_seed(0)
    net = build("conresnet", 4, 3, preset="paper", width_divisor=4, shape=(8, 16, 16))
    out = net(torch.randn(1, 4, 8, 16, 16))
    _backward_all([out.logits, *out.residual_logits])
    used = sum(p.numel() for p in net.parameters() if p.grad is not None and p.grad.abs().sum() > 0)
    assert used == 1_192_132 and _total(net) == 1_219_988  # golden README: used / total at quarter width
    assert set(_without_gradient(net)) == {f"official_unused.{k}" for k in net.official_unused.keys()}
    with pytest.raises(SegNetsError, match="built for input size"):
        net(torch.randn(1, 4, 8, 16, 24))


def test_conresnet_default_odd_size_contract_and_gradients():
    torch.manual_seed(0)
    net = build("conresnet", 2, 3, base_channels=8)
    x = torch.randn(1, 2, 8, 13, 11)  # D = 8: the 1/4-size residual samples real slices
    out = net(x)
    assert isinstance(out, ConResNetOutput)
    assert out.logits.shape == (1, 3, 8, 13, 11)
    assert [r.shape for r in out.residual_logits] == [(1, 3, 8, 13, 11)] * 3
    _backward_all([out.logits, *out.residual_logits])
    assert _without_gradient(net) == []
    assert len(net.official_unused) == 0


def test_conresnet_computes_the_slice_residual_itself():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(1, 1, 3, 2, 4) ** 2
    res = image_residual(x)
    assert torch.equal(res[:, :, 0], torch.zeros_like(res[:, :, 0]))
    assert torch.equal(res[:, :, 2], (x[:, :, 2] - x[:, :, 1]).abs())
    torch.manual_seed(0)
    net = build("conresnet", 1, 2, base_channels=8).eval()
    y = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(net(y).logits, net(y, image_residual(y)).logits)
        assert not torch.allclose(net(y).logits, net(y, torch.zeros_like(y)).logits)


def test_conresnet_rejects_bad_inputs_and_widths():
    with pytest.raises(SegNetsError, match="GroupNorm"):
        build("conresnet", 1, 2, base_channels=12)
    net = build("conresnet", 2, 2, base_channels=8)
    with pytest.raises(SegNetsError, match="expected"):
        net(torch.zeros(1, 3, 8, 8, 8))
    with pytest.raises(SegNetsError, match="width_divisor"):
        build("conresnet", 4, 3, preset="paper", width_divisor=3)


# ---- 3D RU-Net ---------------------------------------------------------------------------------------
def test_runet_paper_parameter_count():
    net = build("runet", 1, 2, preset="paper")
    assert _total(net) == 4_255_782
    assert net.dilations == (1, 2, 2) and net.roi_extension == "official"
    assert _total(build("runet", 1, 2, preset="paper", dilations="RF64")) == 4_255_782
    with pytest.raises(SegNetsError, match="divisible"):
        build("runet", 1, 2, preset="paper", base_channels=4)(torch.zeros(1, 1, 3, 8, 8))


def test_runet_default_odd_size_contract_and_gradients():
    torch.manual_seed(0)
    net = build("runet", 1, 3, base_channels=8)
    x = torch.rand(1, 1, 7, 30, 26)
    out = net(x)
    assert isinstance(out, RUNetOutput)
    assert out.logits.shape == out.probabilities.shape == (1, 3, 7, 30, 26)
    assert out.coarse_logits.shape == (1, 3, 4, 8, 7)
    assert 2 <= len(out.rois) == len(out.roi_logits) == len(out.roi_contour_logits)  # >= 1 per foreground class
    for box, region, contour in zip(out.rois, out.roi_logits, out.roi_contour_logits):
        assert isinstance(box, Box) and all(0 <= a < b <= s for a, b, s in zip(box.start, box.stop, x.shape[2:]))
        assert region.shape == contour.shape == (1, 3, *box.shape)
    assert torch.allclose(out.probabilities.sum(1), torch.ones(1, 7, 30, 26))
    assert torch.allclose(torch.softmax(out.logits, 1), out.probabilities, atol=1e-6)
    covered = torch.zeros(7, 30, 26, dtype=torch.bool)
    for box in out.rois:
        covered[box.slices] = True
    assert torch.all(out.probabilities[0, 0][~covered] == 1)  # outside every RoI: background
    _backward_all([out.logits, out.coarse_logits, *out.roi_contour_logits])
    assert _without_gradient(net) == []


def test_runet_batch_of_two_uses_common_rois():
    torch.manual_seed(1)
    net = build("runet", 2, 2, base_channels=4).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 2, 4, 16, 16))
    assert out.logits.shape == (2, 2, 4, 16, 16)
    assert all(r.shape[0] == 2 for r in out.roi_logits)


def _coarse_with_blob(grid=(8, 16, 16), blob=(slice(3, 5), slice(6, 10), slice(6, 8))) -> torch.Tensor:
    logits = torch.zeros(1, 2, *grid)
    logits[(0, 1, *blob)] = 10.0  # one foreground component of 2 x 4 x 2 cells
    return logits


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (dict(roi_extension="official"), Box(2, 4, 4, 6, 12, 10)),
        (dict(roi_extension="padding", roi_padding=(0, 1, 1)), Box(3, 5, 5, 5, 11, 9)),
        (dict(roi_extension="scale2"), Box(2, 4, 5, 6, 12, 9)),
        (dict(roi_extension="scale1.5"), Box(2, 5, 5, 6, 11, 9)),
        (dict(roi_extension="fixed", roi_size=(4, 40, 24)), Box(3, 3, 4, 5, 13, 10)),
    ],
)
def test_runet_roi_extension_options(options, expected):
    net = build("runet", 1, 2, base_channels=4, **options).eval()
    rois = net.propose_rois(_coarse_with_blob())
    assert rois == [(expected, 16)]


def test_runet_official_clamp_and_roi_limits():
    net = build("runet", 1, 2, preset="paper", base_channels=4, max_rois_test=2, max_rois_train=1).eval()
    logits = torch.zeros(1, 2, 4, 16, 16)
    logits[0, 1, 2:4, 12:16, 12:16] = 10.0  # touches the far corner: end clamped at shape - 1
    logits[0, 1, 0, 0, 0:2] = 10.0
    logits[0, 1, 0, 5, 5] = 10.0
    rois = net.propose_rois(logits)
    assert rois == [(Box(1, 10, 10, 3, 15, 15), 32), (Box(0, 0, 0, 2, 3, 4), 2)]
    assert net.train().propose_rois(logits) == rois[:1]
    assert build("runet", 1, 2, base_channels=4).eval().propose_rois(torch.zeros(1, 2, 4, 8, 8)) == [
        (Box(0, 0, 0, 1, 1, 1), 0)
    ]


def test_runet_rejects_bad_options():
    with pytest.raises(SegNetsError, match="roi_extension"):
        build("runet", 1, 2, roi_extension="grow")
    with pytest.raises(SegNetsError, match="dilation"):
        build("runet", 1, 2, dilations="RF99")
    with pytest.raises(SegNetsError, match="num_classes"):
        build("runet", 1, 1)
    with pytest.raises(SegNetsError, match="option"):
        build("runet", 1, 2, colour="red")


def test_runet_paste_averages_overlaps_with_the_official_floor():
    a = torch.zeros(1, 2, 1, 1, 2, dtype=torch.float64)
    a[:, 1] = torch.tensor([0.8, 0.4], dtype=torch.float64)
    b = torch.zeros(1, 2, 1, 1, 1, dtype=torch.float64)
    b[:, 1] = 0.2
    pasted = RUNet.paste([a, b], [Box(0, 0, 0, 1, 1, 2), Box(0, 0, 1, 1, 1, 2)], (1, 1, 3))
    assert pasted[0, 1].flatten().tolist() == pytest.approx([0.8 / 1.001, 0.6 / 2.001, 0.0], abs=1e-15)
    assert pasted.dtype == torch.float64 and torch.allclose(pasted.sum(1), torch.ones(1, 1, 1, 3, dtype=torch.float64))
    empty = RUNet.paste([], [], (1, 2, 2), like=torch.zeros(1, 3, 1, 1, 1))
    assert torch.all(empty[:, 0] == 1) and torch.all(empty[:, 1:] == 0)
