"""conv_of_concatenation: a decoder convolution summed over its input parts in inference equals the
convolution of the concatenation, and training still concatenates."""

import pytest
import torch
from torch import nn

from SegNetsLib.nets import build
from SegNetsLib.nets.blocks.concat_conv import conv_of_concatenation


@pytest.mark.parametrize(
    "options", [dict(padding=1), dict(padding=2, dilation=2, stride=2), dict(padding=0, bias=False)]
)
def test_summed_parts_equal_the_convolution_of_the_concatenation(options):
    torch.manual_seed(0)
    conv = nn.Conv3d(7, 5, 3, **options)
    parts = [torch.randn(2, 3, 9, 10, 11), torch.randn(2, 1, 9, 10, 11), torch.randn(2, 3, 9, 10, 11)]
    expected = conv(torch.cat(parts, dim=1)).detach()
    given = list(parts)
    with torch.inference_mode():
        summed = conv_of_concatenation(conv, given)
    assert given == []  # emptied, so the caller's features can be freed as they are used
    torch.testing.assert_close(summed, expected, rtol=1e-5, atol=1e-5)


def test_training_concatenates_and_gets_the_same_gradients():
    torch.manual_seed(0)
    conv = nn.Conv3d(4, 2, 3, padding=1)
    a, b = torch.randn(1, 1, 6, 6, 6, requires_grad=True), torch.randn(1, 3, 6, 6, 6, requires_grad=True)
    conv_of_concatenation(conv, [a, b]).square().sum().backward()
    grads = a.grad.clone(), b.grad.clone(), conv.weight.grad.clone()
    a.grad = b.grad = conv.weight.grad = None
    conv(torch.cat([a, b], dim=1)).square().sum().backward()
    for got, want in zip(grads, (a.grad, b.grad, conv.weight.grad)):
        torch.testing.assert_close(got, want)


def test_parts_that_do_not_add_up_to_the_input_channels_are_refused():
    conv = nn.Conv3d(4, 2, 3)
    with torch.inference_mode(), pytest.raises(ValueError, match="3 channels in all; the convolution takes 4"):
        conv_of_concatenation(conv, [torch.zeros(1, 1, 5, 5, 5), torch.zeros(1, 2, 5, 5, 5)])


@pytest.mark.parametrize(
    "architecture, preset, args",
    [
        ("unet3d", "default", dict(base_channels=4, levels=3, norm="batch")),
        ("unet3d", "paper", dict(base_channels=2, levels=2)),
        ("runet", "paper", dict(base_channels=4)),
    ],
)
def test_networks_give_the_same_logits_in_inference_as_with_the_concatenation(architecture, preset, args):
    torch.manual_seed(0)
    net = build(architecture, 1, 2, preset, **args).eval()
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.enable_grad():  # autograd on: the decoders concatenate
        concatenated = net(x).logits.detach()
    with torch.inference_mode():
        summed = net(x).logits
    torch.testing.assert_close(summed, concatenated, rtol=1e-4, atol=1e-4)
