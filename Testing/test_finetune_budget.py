"""The fine-tuning budget covers segmentation and refinement (SegNetsLib.finetune_budget)."""

import torch

from SegNetsLib import nets
from SegNetsLib.finetune_budget import MINIMUM_TRAINING_S, after_training_reserve_s, training_budget_s, window_seconds


def test_training_gets_what_the_run_has_not_used_or_kept():
    assert training_budget_s(120.0, 5.0, 10.0) == 105.0
    assert training_budget_s(20.0, 15.0, 30.0) == MINIMUM_TRAINING_S  # never nothing to train on


def test_timing_a_window_leaves_the_network_training_and_unchanged():
    net = nets.build("unet3d", 1, 2, "default", base_channels=4, levels=2, norm="batch").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    seconds = window_seconds(net, 1, (8, 16, 16), torch.device("cpu"))
    assert seconds > 0 and net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # batch-norm statistics untouched
    assert after_training_reserve_s(net, 1, (8, 16, 16), (8, 16, 16), torch.device("cpu")) > 0
