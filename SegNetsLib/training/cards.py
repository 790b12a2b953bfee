"""The cards of trained models: a new model's from its dataset, and the final one saved to the library."""

from __future__ import annotations

from SegNetsLib import __version__
from SegNetsLib.card.card import ChannelInfo, ModelCard, Provenance
from SegNetsLib.card.factory import make_card, next_version, now_utc, slug
from SegNetsLib.models.library import ModelLibrary
from SegNetsLib.training.data import default_patch_size, fit_normalization, grid_shapes, median_spacing, modality
from SegNetsLib.training.dataset import Case, LabeledDataset
from SegNetsLib.training.options import TrainOptions


def new_card(
    architecture: str, dataset: LabeledDataset, train_cases: list[Case], options: TrainOptions, base: ModelCard | None
) -> ModelCard:
    """The card of the model being trained: labels and channels from dataset.json, preprocessing
    from the training cases (or the base model's), patch size, architecture and width."""
    if base is not None:
        card = ModelCard.from_dict(base.to_dict())
        card.patch_size = tuple(options.patch_size or card.patch_size)
        return card
    spacing = median_spacing(train_cases)
    shapes = grid_shapes(train_cases, spacing)
    patch = options.patch_size or default_patch_size(shapes, options.max_patch_size or (64, 128, 128))
    first = modality(dataset.channels[0])
    return make_card(
        architecture,
        dataset.labels,
        in_channels=[ChannelInfo(name, modality(name)) for name in dataset.channels],
        modality=first,
        name=options.save_model,
        preset=options.preset,
        build_args=options.build_args,
        target_spacing=spacing,
        normalization=fit_normalization(dataset, train_cases, options.seed),
        patch_size=tuple(int(s) for s in patch),
        description=f"Trained with 'segnets train' on dataset {dataset.name!r}. {dataset.description}".strip(),
    )


def ranks_used(earlier: list[int] | None, world_size: int) -> list[int]:
    """The numbers of processes a run has trained with, in order: a resumed run's ``earlier`` ones, then this one."""
    used = [int(n) for n in earlier or [world_size]]
    return used if used[-1] == world_size else [*used, world_size]


def final_card(
    trained: ModelCard,
    dice: dict[str, float | None],
    *,
    options: TrainOptions,
    epochs: int,
    seconds: float,
    iterations: int | None = None,
    base_card: ModelCard | None,
    dataset: LabeledDataset,
    train_cases: list[Case],
    validation_cases: list[Case],
    ranks: list[int],
    patch_size: tuple[int, ...],
) -> ModelCard:
    """The card saved with the trained model: its library id and version, and what it was trained on.

    ``ranks``: the numbers of processes the run trained with, in order (more than one when resumed with another).
    """
    card = ModelCard.from_dict(trained.to_dict())
    card.id, card.name = slug(options.save_model), options.save_model
    library = ModelLibrary()
    if library.versions(card.id):
        card.version = next_version(library, card, part="major")
    iterations = epochs * options.iterations_per_epoch if iterations is None else iterations
    card.provenance = Provenance(
        base_model_id=base_card.id if base_card else None,
        base_model_version=base_card.version if base_card else None,
        trained_on=[
            {
                "dataset": dataset.name,
                "training_cases": len(train_cases),
                "validation_cases": len(validation_cases),
                "cases": [case.name for case in train_cases],
                "validation": [case.name for case in validation_cases],
                "ranks": ranks[0] if len(ranks) == 1 else list(ranks),
                **dataset.extra,
            }
        ],
        iterations=iterations,
        seconds=seconds,
        validation={name: value for name, value in dice.items() if value is not None},
        created=now_utc(),
        segnets_version=__version__,
        notes=f"{epochs} epochs x {options.iterations_per_epoch} iterations"
        + (
            f" ({iterations} in all, the last epoch cut short by the time limit)"
            if iterations < epochs * options.iterations_per_epoch
            else ""
        )
        + ", batch "
        f"{options.batch_size} per rank"
        + (f" on {' then '.join(str(n) for n in ranks)} ranks" if len(ranks) > 1 else "")
        + f", patch {list(patch_size)}.",
    )
    return card
