"""What a fine-tuning run is asked to do (:class:`FinetuneOptions`) and what it gives back (:class:`FinetuneResult`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from SegNetsLib.card.card import ModelCard
from SegNetsLib.core import annotation as ann
from SegNetsLib.core.box import Box
from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.sampling import Slice
from SegNetsLib.finetune.suggest import SliceSuggestion
from SegNetsLib.training.augment import AugmentOptions

DEFAULT_TIME_LIMIT_S = {"cpu": 60.0, "cuda": 20.0}
# fine-tuning keeps the dense deformation of the augmentation. Without it a patch is augmented 4x faster on a CPU
# (0.028 s against 0.116 s) and 60 s runs trained more iterations, but on the tune set of bench/sparse_sets.py the
# network alone fell from mean Dice 0.610 / 0.699 (k = 2 / 3, with it) to 0.558 / 0.620, the final result from
# 0.806 / 0.889 to 0.806 / 0.879 (one 60 s run each on a loaded 2-core machine)
FINETUNE_DEFORM = True


@dataclass
class FinetuneOptions:
    """How to fine-tune. With neither ``iterations`` nor ``time_limit_s`` the budget is 60 s (CPU) / 20 s (GPU).

    time_limit_s: wall-clock seconds for the whole run, segmentation and refinement included (training
    gets what is left after :mod:`SegNetsLib.finetune.budget` estimates them).

    slices: annotated slices to add to those detected (e.g. all-background slices), {axis: [indices]}.
    patch_size: training patch (d, h, w) on the network grid; default (8, 48, 48) from scratch, the
    card's patch size (at most 32 x 96 x 96) when fine-tuning; either enlarged to a size the network takes
    (a paper-preset ConResNet's fixed size, a paper-preset 3D RU-Net's multiples of 2 x 4 x 4).
    scratch_downsample: in-plane coarsening of the grid a new network learns on. final_fraction: share of
    the budget spent, after validation, on all annotated slices (held-out ones included). threads: CPU threads for torch while fine-tuning;
    None = one thread when the machine is busier than its cores (load average above the core count),
    where several OpenMP threads mostly wait for each other (measured 6x slower here), else torch's default.
    segment: False skips the whole-volume segmentation (``labelmap`` is then the annotation itself).
    refine: settle the network's boundaries with a seeded random walker (:mod:`SegNetsLib.finetune.refine`).
    changing: the only box [k, j, i] of the result the caller will use (a correction round keeps the rest of the
    previous result, :func:`SegNetsLib.finetune.update.changing_box`): the random walkers run only there, and
    elsewhere the result is the network's labelmap; None: everywhere.
    annotation_name: how error messages name the annotation (its file, say).
    seed: the random draws of a new network's weights, the patches and the augmentation (with the same
    seed, threads and iterations a run repeats itself exactly).
    library_root: the library a locator model the card names by id is looked up in when the whole volume is
    segmented (the one the model was chosen from); None: ``$SEGNETS_MODELS`` or ``~/.segnets/models``.
    """

    iterations: int | None = None
    time_limit_s: float | None = None
    device: str = "auto"
    slices: Mapping[int, Sequence[int]] | None = None
    ignore_value: int | None = ann.DEFAULT_IGNORE_VALUE
    learning_rate: float | None = None
    batch_size: int = 2
    patch_size: tuple[int, int, int] | None = None
    scratch_downsample: int = 2
    scratch_build_args: dict | None = None
    extend_head: bool = False
    validation: bool = True
    final_fraction: float = 0.25
    augmentation: AugmentOptions = field(default_factory=lambda: AugmentOptions(deform=FINETUNE_DEFORM))
    foreground_fraction: float = 0.5
    label_names: dict[int, str] | None = None
    volume_name: str = ""
    annotation_name: str = "the annotation"
    seed: int = 0
    threads: int | None = None
    refine: bool = True
    segment: bool = True
    changing: Box | None = None
    library_root: Path | None = None


@dataclass
class FinetuneResult:
    """net/card: the model kept (the fine-tuned one, or the base when it validated better; then
    ``kept == "base"`` and nothing new need be saved; a new network that trained 0 iterations: ``kept ==
    "untrained"``, nothing to save); labelmap: uint8 [k, j, i] in the input's geometry with every annotated voxel
    equal to the user's label; validation_dice / base_validation_dice: mean foreground Dice on the held-out
    annotated slices (None without held-out slices); network_labelmap: the network's own labelmap [k, j, i] before
    boundary refinement (annotated voxels kept too; untrained: the labelmap, the random walker's own or the
    painting).
    round / added_slices / suggestion: set by :func:`SegNetsLib.finetune.rounds.finetune_round`: the interactive
    round (1 the first on this volume, n + 1 continued from round n; 0 when :func:`finetune` ran alone or
    ``kept == "untrained"``, then no suggestion either), the
    slices it added {axis: indices}, and the slice to paint next (:class:`SegNetsLib.finetune.suggest.SliceSuggestion`,
    None when no slice would add anything); repainted_slices: the earlier rounds' slices painted differently now
    {axis: indices} (known given the previous result)."""

    net: nn.Module
    card: ModelCard
    labelmap: Volume
    validation_dice: float | None
    kept: str
    base_validation_dice: float | None = None
    iterations: int = 0
    seconds: float = 0.0
    slices: dict[int, list[int]] = field(default_factory=dict)
    validation_slices: list[Slice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    network_labelmap: np.ndarray | None = None
    round: int = 0
    added_slices: dict[int, list[int]] = field(default_factory=dict)
    suggestion: SliceSuggestion | None = None
    repainted_slices: dict[int, list[int]] = field(default_factory=dict)
