"""RoI boxes from a coarse pass: foreground masks of logits, then components scaled, extended and merged."""

from __future__ import annotations

import logging

import numpy as np
import torch
from inference_helpers import ThresholdNet, hounsfield, threshold_card

from SegNetsLib.card.card import RoiSettings
from SegNetsLib.core.box import Box
from SegNetsLib.core.volume import Volume
from SegNetsLib.inference.locate import boxes_from_masks, foreground_masks
from SegNetsLib.inference.predictor import Predictor


def test_boxes_from_masks_scale_extend_and_merge():
    mask = np.zeros((10, 20, 20), bool)
    mask[2:4, 3:6, 3:6] = True  # a component
    mask[2:4, 7:9, 7:9] = True  # a second one whose extended box overlaps the first
    mask[8, 18, 18] = True  # a one-voxel speck, kept: 1 % of the largest (18 voxels) rounds up to one voxel
    settings = RoiSettings(extension="padding", padding_mm=4.0)
    boxes = boxes_from_masks([mask], (2.0, 2.0, 2.0), (20, 40, 40), (2.0, 1.0, 1.0), settings)
    # components -> fine grid (x2) -> +2 voxels along z (4 mm / 2 mm) and +4 in y, x -> merged
    assert Box(2, 2, 2, 10, 22, 22) in boxes
    assert len(boxes) == 2
    scaled = boxes_from_masks(
        [mask[:, :10, :10]], (1.0, 1.0, 1.0), (10, 10, 10), (1.0, 1.0, 1.0), RoiSettings(extension="scale2")
    )
    # (2:4, 3:6, 3:6) -> (1:5, 1:8, 1:8) and (2:4, 7:9, 7:9) -> (1:5, 6:10, 6:10), overlapping -> merged
    assert scaled == [Box(1, 1, 1, 5, 10, 10)]


def test_foreground_masks_softmax_and_multi_label():
    logits = torch.zeros(3, 2, 2, 2)
    logits[1, 0] = 5.0
    logits[2, 1, 0] = 6.0
    softmax = foreground_masks(logits, multi_label=False)
    assert len(softmax) == 2 and softmax[0][0].all() and softmax[1][1, 0].all() and not softmax[0][1].any()
    multi = foreground_masks(torch.tensor([[[[1.0, -1.0]]]]).expand(1, 1, 2, 2), multi_label=True)
    assert multi[0][..., 0].all() and not multi[0][..., 1].any()


def test_components_left_out_of_the_rois_are_reported(caplog):
    """Beyond the 10 largest components of a label, or under 1 % of its largest, the coarse pass's finds are
    not segmented: the log must say how many, never skip them silently."""
    mask = np.zeros((4, 40, 40), bool)
    for index in range(12):  # twelve equal 2 x 2 x 2 components, far apart
        y, x = 3 * (index // 4) * 4, 3 * (index % 4) * 3
        mask[1:3, y : y + 2, x : x + 2] = True
    mask[:, 30:40, 30:40] = True  # the largest: 400 voxels; 1 % of it is 4 voxels
    mask[0, 0, 39] = True  # a one-voxel speck under that
    settings = RoiSettings(extension="padding", padding_mm=0.0)
    with caplog.at_level(logging.INFO, logger="SegNetsLib"):
        boxes = boxes_from_masks([mask], (1.0, 1.0, 1.0), mask.shape, (1.0, 1.0, 1.0), settings)
    assert len(boxes) == 10
    assert "left out 4 component(s)" in caplog.text
    assert "3 beyond the 10 largest of their label, 1 under 1 %" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="SegNetsLib"):
        boxes_from_masks([mask[:, 30:, 30:]], (1.0, 1.0, 1.0), (4, 10, 10), (1.0, 1.0, 1.0), settings)
    assert "left out" not in caplog.text


def test_components_left_out_are_said_in_one_sentence_naming_the_volume(caplog):
    """The warning is what ``segnets segment --quiet`` shows of a folder's volume: it named none."""
    array = np.full((24, 64, 64), -1000, np.int16)
    for index in range(12):  # twelve bright blobs apart: the coarse pass finds 12 components of one label
        y, x = 4 + 14 * (index // 4), 4 + 14 * (index % 4)
        array[8:16, y : y + 6, x : x + 6] = 1000
    card = threshold_card(1, roi=RoiSettings(mode="auto", coarse_factor=2.0, extension="padding", padding_mm=0.0))
    predictor = Predictor(ThresholdNet(hounsfield(0.0)), card, device="cpu")
    with caplog.at_level(logging.WARNING, logger="SegNetsLib"):
        prediction = predictor.predict(Volume(array, (2.0, 2.0, 2.0)), roi="auto", name="scan_07.nii.gz")
    assert len(prediction.rois) == 10
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("scan_07.nii.gz: RoI localization left out 2 component(s)")
    assert warnings[0].count(". ") == 0 and warnings[0].endswith("segment with RoI off to include them.")


def test_components_left_out_of_the_list_but_inside_a_roi_are_segmented_and_not_reported(caplog):
    """Padded boxes that merge into one RoI over the whole volume segment every component: the log said that the
    twelve-blob volume's 2 beyond the 10 largest were not segmented."""
    mask = np.zeros((4, 40, 40), bool)
    for index in range(12):  # twelve equal 2 x 2 x 2 components
        y, x = 3 * (index // 4) * 4, 3 * (index % 4) * 3
        mask[1:3, y : y + 2, x : x + 2] = True
    with caplog.at_level(logging.INFO, logger="SegNetsLib"):
        boxes = boxes_from_masks([mask], (1.0, 1.0, 1.0), mask.shape, (1.0, 1.0, 1.0), RoiSettings(padding_mm=40.0))
    assert boxes == [Box(0, 0, 0, 4, 40, 40)]
    assert "left out" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="SegNetsLib"):  # unpadded: the 2 boxes beyond the 10 are outside
        boxes = boxes_from_masks([mask], (1.0, 1.0, 1.0), mask.shape, (1.0, 1.0, 1.0), RoiSettings(padding_mm=0.0))
    assert len(boxes) == 10 and "left out 2 component(s)" in caplog.text
