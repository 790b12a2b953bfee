"""oneDNN routing of CPU 3D convolutions during inference (SegNetsLib.runtime.cpu_conv)."""

import pytest
import torch
import torch.nn.functional as F

from SegNetsLib.runtime.cpu_conv import OneDnnConv3d, fast_cpu_convolutions


@pytest.mark.parametrize(
    "channels, groups, stride, padding, dilation, bias",
    [
        (1, 1, 1, 1, 1, True),
        (4, 1, 1, 1, 1, False),
        (8, 2, 2, 0, 1, True),
        (4, 1, 1, 2, 2, True),
        (6, 3, (1, 2, 2), (1, 0, 1), 1, True),
    ],
)
def test_convolutions_inside_the_mode_equal_pytorchs(channels, groups, stride, padding, dilation, bias):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, 12, 20, 18, generator=generator)
    weight = torch.randn(6, channels // groups, 3, 3, 3, generator=generator)
    b = torch.randn(6, generator=generator) if bias else None
    expected = F.conv3d(x, weight, b, stride, padding, dilation, groups)
    with torch.inference_mode(), OneDnnConv3d():
        got = F.conv3d(x, weight, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
        module = torch.nn.Conv3d(channels, 6, 3, stride, padding, dilation, groups, bias=bias)
        module.weight.data, module.bias = torch.nn.Parameter(weight), torch.nn.Parameter(b) if bias else None
        from_module = module(x)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-4)
    assert torch.allclose(from_module, expected, atol=1e-4)


def test_training_and_same_padding_pass_through_unchanged():
    conv = torch.nn.Conv3d(1, 2, 3, padding="same")
    x = torch.randn(1, 1, 6, 6, 6)
    with OneDnnConv3d():
        out = conv(x)  # padding="same" and autograd: PyTorch's own path
        out.sum().backward()
    assert out.shape == (1, 2, 6, 6, 6) and conv.weight.grad is not None


def test_only_the_cpu_gets_the_mode():
    assert isinstance(fast_cpu_convolutions(torch.device("cpu")), OneDnnConv3d) == torch.backends.mkldnn.is_available()
    assert not isinstance(fast_cpu_convolutions(torch.device("cuda")), OneDnnConv3d)


def test_unbatched_input_inside_the_mode_equals_pytorchs():
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(4, 6, 7, 8, generator=generator), torch.randn(2, 4, 3, 3, 3, generator=generator)
    with torch.inference_mode(), OneDnnConv3d():
        got = F.conv3d(x, weight, padding=1)
    torch.testing.assert_close(got, F.conv3d(x, weight, padding=1))
