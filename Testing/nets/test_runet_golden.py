"""3D RU-Net against the official implementation (huangyjhust/3D-RU-Net @0adaf43): base-16 golden model,
RF112 (float32 and float64) and RF88, RoIs exact, full-width key names (Testing/Data/golden)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.nets import load_official
from SegNetsLib.nets.runet import GRID, RUNet

BOUND = {torch.float32: 1e-4, torch.float64: 1e-10}  # golden README bounds on probabilities


@pytest.fixture(scope="module")
def golden(data_dir):
    folder = data_dir / "golden"
    state = torch.load(folder / "runet_mini_b16_state.pt", weights_only=True)
    io = torch.load(folder / "runet_mini_b16_io.pt", weights_only=True)
    return state, io


def _grid_boxes(rois) -> list[list[int]]:
    return [[b // g for b, g in zip(box, GRID + GRID)] for box in rois]


@pytest.mark.parametrize(
    ("dilations", "key", "dtype"),
    [
        ("RF112", "outputs", torch.float32),
        ("RF112", "outputs_fp64", torch.float64),
        ("RF88", "outputs_RF88", torch.float32),
    ],
)
def test_matches_official(golden, dilations, key, dtype):
    state, io = golden
    ref, bound = io[key], BOUND[dtype]
    model = load_official("runet", state, dilations=dilations).to(dtype).eval()
    with torch.no_grad():
        out = model(io["image"].to(dtype))

    # coarse mask and RoIs: exact
    assert (torch.softmax(out.coarse_logits, 1) - ref["loc_prob"]).abs().max() <= bound
    mask = model.coarse_masks(out.coarse_logits)
    assert np.array_equal(mask[0], ref["loc_mask_binary"][0, 0].numpy().astype(bool))
    assert _grid_boxes(out.rois) == ref["rois_grid"].tolist()
    assert [b.scaled((1, 1, 1)) for b in out.rois] == [tuple(r) for r in ref["rois_voxel"].tolist()]
    assert [area for _, area in model.propose_rois(out.coarse_logits)] == ref["roi_component_area"].tolist()

    # per-RoI heads and the pasted volumes
    assert len(out.roi_logits) == len(ref["region_prob"]) == len(out.roi_contour_logits)
    for ours, theirs in zip(out.roi_logits, ref["region_prob"]):
        assert (torch.softmax(ours, 1) - theirs).abs().max() <= bound
    contour = [torch.softmax(c, 1) for c in out.roi_contour_logits]
    for ours, theirs in zip(contour, ref["contour_prob"]):
        assert (ours - theirs).abs().max() <= bound
    region_fg = out.probabilities[:, 1:].double()
    assert (region_fg - ref["pasted_region_fg"]).abs().max() <= bound
    assert (torch.softmax(out.logits.double(), 1)[:, 1:] - ref["pasted_region_fg"]).abs().max() <= bound
    contour_fg = RUNet.paste(contour, out.rois, io["image"].shape[2:])[:, 1:]
    assert (contour_fg - ref["pasted_contour_fg"]).abs().max() <= bound

    # thresholded mask: mismatches only where the reference is within the bound of 0.5
    differs = (region_fg >= 0.5) != ref["pasted_region_binary"].bool()
    assert ((ref["pasted_region_fg"][differs] - 0.5).abs() < bound).all()


def test_train_mode_keeps_the_two_largest_rois(golden):
    state, io = golden
    model = load_official("runet", state).train()
    with torch.no_grad():
        coarse = model.locator_head(model.encode(io["image"])[2])
    boxes = [list(box) for box, _ in model.propose_rois(coarse)]
    assert boxes == io["outputs"]["rois_grid_train_mode"].tolist()


def test_full_width_official_keys_convert(data_dir):
    spec = json.loads((data_dir / "golden" / "full_width_keys.json").read_text())["runet"]
    state = {key: torch.full(shape, 0.25) for key, shape in spec["keys"]}
    model = load_official("runet", state)
    assert sum(p.numel() for p in model.parameters()) == spec["total_params"] == 4_255_782
    assert model.inc.conv1.weight.shape == (48, 1, 1, 3, 3) and model.contour_head.bias.shape == (2,)
    assert all(torch.all(p == 0.25) for p in model.parameters())
    prefixed = load_official("runet", {f"module.{k}": v for k, v in state.items()})
    assert sum(p.numel() for p in prefixed.parameters()) == 4_255_782


def test_mismatches_are_reported_in_words(golden):
    state = golden[0]
    bad = dict(state, **{"LocalRegionDecoder.up1.conv.weight": torch.zeros(32, 64, 1, 1, 2)})
    with pytest.raises(SegNetsError, match=r"up1\.conv\.weight.*shape"):
        load_official("runet", bad)
    with pytest.raises(SegNetsError, match="SegTop3"):
        load_official("runet", dict(state, **{"LocalRegionDecoder.SegTop3.conv.weight": torch.zeros(1)}))
    with pytest.raises(SegNetsError, match="not a 3D RU-Net"):
        load_official("runet", {"conv.weight": torch.zeros(1)})
