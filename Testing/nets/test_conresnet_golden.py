"""ConResNet against the official implementation (jianpengz/ConResNet @cf32e95): quarter-width golden
model, float32 and float64, plain and ``module.``-prefixed keys, full-width key names (Testing/Data/golden)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.nets import build, load_official
from SegNetsLib.nets.conresnet import image_residual

HEADS = ("seg_logits", "res_logits", "resx2_logits_up", "resx4_logits_up")
FP32_REL, FP64_REL, PROB_FP32 = 2e-4, 1e-9, 1e-3  # golden README bounds (relative to max|ref|, and absolute)
SHAPE = (16, 64, 48)


@pytest.fixture(scope="module")
def golden(data_dir):
    folder = data_dir / "golden"
    state = torch.load(folder / "conresnet_quarter_state.pt", weights_only=True)
    io = load_file(str(folder / "conresnet_quarter_io_reduced.safetensors"))
    ref32 = {h: io[f"{h}_fp32"] for h in HEADS}
    ref64 = {h: io[f"{h}_fp32"].double() + io[f"{h}_fp64_minus_fp32"].double() for h in HEADS}
    return state, io["image"], ref32, ref64


def _heads(output) -> dict[str, torch.Tensor]:
    return dict(zip(HEADS, [output.logits, *output.residual_logits]))


def test_float32_matches_official(golden):
    state, image, ref32, _ = golden
    model = load_official("conresnet", state, shape=SHAPE).eval()
    with torch.no_grad():
        ours = _heads(model(image))  # the network computes |I[s]-I[s-1]| itself
    for name in HEADS:
        scale = ref32[name].abs().max()
        assert (ours[name] - ref32[name]).abs().max() <= FP32_REL * scale, name
    ours_prob, ref_prob = torch.sigmoid(ours["seg_logits"]), torch.sigmoid(ref32["seg_logits"])
    assert (ours_prob - ref_prob).abs().max() <= PROB_FP32
    differs = (ours_prob >= 0.5) != (ref_prob >= 0.5)
    assert ((ref_prob[differs] - 0.5).abs() < PROB_FP32).all()


def test_float64_matches_official(golden):
    state, image, _, ref64 = golden
    model = load_official("conresnet", state, shape=SHAPE).double().eval()
    residual = image_residual(image).double()  # the official loader computes it once, in float32
    with torch.no_grad():
        ours = _heads(model(image.double(), residual))
    for name in HEADS:
        assert (ours[name] - ref64[name]).abs().max() <= FP64_REL * ref64[name].abs().max(), name


def test_module_prefixed_keys_load_the_same_weights(golden):
    state = golden[0]
    plain = load_official("conresnet", state, shape=SHAPE).state_dict()
    prefixed = load_official("conresnet", {f"module.{k}": v for k, v in state.items()}, shape=SHAPE).state_dict()
    assert plain.keys() == prefixed.keys()
    assert all(torch.equal(plain[k], prefixed[k]) for k in plain)
    assert sum(v.numel() for v in plain.values()) == 1_219_988


def test_full_width_official_keys_convert(data_dir):
    spec = json.loads((data_dir / "golden" / "full_width_keys.json").read_text())["conresnet"]
    state = {key: torch.full(shape, 0.5) for key, shape in spec["keys"]}
    model = load_official("conresnet", state)
    assert sum(p.numel() for p in model.parameters()) == spec["total_params"] == 19_441_196
    assert model.stem.weight.shape == (32, 4, 3, 3, 3) and model.res_head_x4.weight.shape == (3, 64, 1, 1, 1)
    # a converter may drop the 23 never-used keys
    used = {k: v for k, v in state.items() if k not in set(spec["unused_keys"])}
    assert len(state) - len(used) == 23
    lean = load_official("conresnet", used)
    assert sum(p.numel() for p in lean.parameters()) == spec["params_used_in_forward"] == 19_018_732


def test_mismatches_are_reported_in_words(golden):
    state = dict(golden[0])
    bad = dict(state, **{"layer2.0.conv1.weight": torch.zeros(32, 32, 3, 3, 1)})
    with pytest.raises(SegNetsError, match=r"layer2\.0\.conv1\.weight.*shape"):
        load_official("conresnet", bad, shape=SHAPE)
    with pytest.raises(SegNetsError, match="not_a_layer"):
        load_official("conresnet", dict(state, not_a_layer=torch.zeros(1)), shape=SHAPE)
    missing = {k: v for k, v in state.items() if k != "seg_x2.0.conv_seg.weight"}
    with pytest.raises(SegNetsError, match="lacks 1 keys"):
        load_official("conresnet", missing, shape=SHAPE)
    with pytest.raises(SegNetsError, match="not a ConResNet"):
        load_official("conresnet", {"weight": torch.zeros(1)})


def test_quarter_width_paper_preset_matches_the_golden_shapes(golden):
    state = golden[0]
    model = build("conresnet", 4, 3, preset="paper", width_divisor=4, shape=SHAPE)
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in state.values())
