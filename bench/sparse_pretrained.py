"""The pretrained setting of the sparse-annotation benchmark (bench/sparse.py --pretrained): a BraTS region (whole
tumour; tumour core as the setting's tune structure), leave one out, a model trained on the two other patients' dense
labels, alone and fine-tuned from k slices."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sparse_methods import (
    BRATS,
    BRATS_REGIONS,
    evaluate,
    metrics,
    read_case,
    run_network,
    save_labelmaps,
    sparse_annotation,
)


def pretrained_bench(
    data: Path,
    ks,
    time_limit,
    pretrain_time,
    cases,
    rows,
    baseline_methods=("mci", "rw"),
    save=None,
    device="cpu",
    library_folder: str | None = None,
    labelmaps: Path | None = None,
    region: str = "whole_tumour",
):
    """Leave-one-out on a BraTS ``region`` (``whole_tumour`` or ``tumour_core``): pretrain on the two others
    (dense), fine-tune on k slices.

    library_folder: keep the pretrained models there, and reuse one found there instead of pretraining again.
    labelmaps: a folder for each fine-tune's network labelmap and result (``CASE_REGION_kK.npz``)."""
    import tempfile

    from SegNetsLib.models.library import ModelLibrary

    volumes = {case: read_case(data / case, BRATS_REGIONS[f"{case}:{region}"]) for case in BRATS}
    library = ModelLibrary(library_folder or tempfile.mkdtemp(prefix="segnets-bench-models-"))
    for held_out in cases:
        start = pretrained_model(library, held_out, volumes, pretrain_time, device, region)
        image, truth = volumes[held_out]
        spacing_kji = image.spacing[::-1]
        from SegNetsLib.inference.predictor import Predictor
        from SegNetsLib.models.library import load

        began = time.monotonic()
        base_net, base_card = load(start)
        base = Predictor(base_net, base_card, device).predict(image).labelmap.array > 0
        dice, hd95 = metrics(base, truth, spacing_kji)
        for k in ks:
            rows.append(
                {
                    "structure": f"{held_out}:{region}",
                    "k": k,
                    "method": "base",
                    "dice": dice,
                    "hd95": hd95,
                    "seconds": time.monotonic() - began,
                }
            )
        for k in ks:
            annotation, slices = sparse_annotation(truth, k)
            prediction, seconds, result = run_network(image, image.with_array(annotation), start, time_limit, device)
            d, h = metrics(prediction, truth, spacing_kji)
            rows.append(
                {
                    "structure": f"{held_out}:{region}",
                    "k": k,
                    "method": "tuned",
                    "dice": d,
                    "hd95": h,
                    "seconds": seconds,
                    "kept": result.kept,
                    "iterations": result.iterations,
                }
            )
            if labelmaps:
                save_labelmaps(labelmaps, f"{held_out}:{region}", k, result, slices)
            d2, h2 = metrics(result.network_labelmap > 0, truth, spacing_kji)
            rows.append(
                {
                    "structure": f"{held_out}:{region}",
                    "k": k,
                    "method": "tuned-unet-only",
                    "dice": d2,
                    "hd95": h2,
                    "seconds": seconds,
                    "kept": result.kept,
                    "iterations": result.iterations,
                }
            )
            print(f"<!-- {held_out} k={k}: base {dice:.3f}, tuned {d:.3f} (kept {result.kept}) -->", flush=True)
            if save:
                save()
            evaluate(f"{held_out}:{region}", image, truth, k, baseline_methods, time_limit, rows, save)


def pretrained_model(library, held_out: str, volumes: dict, pretrain_time: float, device: str, region: str) -> str:
    """Path of the model of ``region`` pretrained on every BraTS case but ``held_out``: found in ``library``, or
    trained from scratch on one case's dense label and then fine-tuned on the next one's (``pretrain_time`` s each)."""
    from SegNetsLib.card.factory import slug
    from SegNetsLib.finetune.options import FinetuneOptions
    from SegNetsLib.finetune.run import finetune
    from SegNetsLib.finetune.save import save_result

    short = {"whole_tumour": "wt", "tumour_core": "tc"}[region]
    model_id = slug(f"brats-{short}-without-{held_out}")  # the id save_result gives this name
    versions = library.versions(model_id)
    if len(versions) == len(BRATS) - 1:  # complete: one version per pretraining case
        return str(library.find(model_id))
    start = "unet3d"
    for case in (c for c in BRATS if c != held_out):  # dense labels: every axial slice is annotated
        image, truth = volumes[case]
        options = FinetuneOptions(
            time_limit_s=pretrain_time,
            device=device,
            validation=False,
            segment=False,
            slices={0: list(range(truth.shape[0]))},
            scratch_downsample=2,
        )
        result = finetune(image, image.with_array(truth.astype(np.uint8)), start, options)
        start = str(library.find(*save_result(result, model_id, library).split("@")))
    return start
