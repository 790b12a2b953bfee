"""``segnets train --dataset DIR --save-model NAME``: train a model from a labeled dataset.

Runs in one process, or as many under ``torchrun --nproc_per_node=N segnets train ...`` (and across
nodes with torchrun's rendezvous); each rank trains on its shard of the cases, rank 0 writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from SegNetsLib.commands.arguments import check_place, json_object, learning_rate, positive_int, seconds, seed
from SegNetsLib.core.constants import ARCHITECTURES, PRESETS


def _name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the model needs a name")
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a labeled dataset (MSD / nnU-Net layout), on one device or many (torchrun)",
        description="Train a network on DATASET (dataset.json, imagesTr/, labelsTr/) and add it to the model "
        "library as NAME. Under 'torchrun --nproc_per_node=N' every process trains on its share of the cases.",
    )
    parser.add_argument(
        "--dataset", required=True, type=Path, metavar="DIR", help="dataset folder (MSD / nnU-Net layout)"
    )
    parser.add_argument(
        "--model",
        default="unet3d",
        metavar="ARCH|ID",
        help=f"architecture to train from scratch ({', '.join(ARCHITECTURES)}; default unet3d) "
        "or a library model id / model folder to continue from",
    )
    parser.add_argument(
        "--save-model", required=True, type=_name, metavar="NAME", help="name of the new model in the library"
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, help="number of epochs (default 50, or the resumed run's)")
    length.add_argument(
        "--time-limit",
        type=seconds,
        metavar="S",
        help="train for this long (seconds, or 90m, 2h), held within a few percent: the epoch count is planned "
        "again after each epoch and the last epoch may be cut short",
    )
    parser.add_argument(
        "--iterations", type=positive_int, help="iterations per epoch (default 250 on a GPU, 50 on the CPU)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=2, help="patches per iteration and rank (default 2)")
    parser.add_argument(
        "--patch-size",
        type=positive_int,
        nargs=3,
        metavar=("D", "H", "W"),
        help="patch size in voxels (default: the median case, at most 64 128 128 on a GPU, 32 64 64 on the CPU)",
    )
    parser.add_argument(
        "--learning-rate", type=learning_rate, help="initial learning rate (default: the architecture's paper value)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto; under torchrun: cuda:LOCAL_RANK)"
    )
    parser.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA too")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    parser.add_argument("--preset", choices=PRESETS, default="default", help="network preset (default: default)")
    parser.add_argument("--base-channels", type=positive_int, help="network width (channels of the first level)")
    parser.add_argument(
        "--build-args", type=json_object, default={}, help="other constructor arguments as JSON (default: none)"
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed, 0 .. 2**32 - 1 (default 0)")
    parser.add_argument("--work-dir", type=Path, help="checkpoints and logs (default: beside the model library)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the work folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from SegNetsLib.training.trainer import TrainOptions, train

    if args.work_dir is not None:
        check_place(args.work_dir, folder=True)

    build_args = dict(args.build_args)
    if args.base_channels:
        build_args["base_channels"] = args.base_channels
    options = TrainOptions(
        save_model=args.save_model,
        epochs=args.epochs,
        time_limit_s=args.time_limit,
        iterations_per_epoch=args.iterations,
        batch_size=args.batch_size,
        patch_size=tuple(args.patch_size) if args.patch_size else None,
        learning_rate=args.learning_rate,
        device=args.device,
        amp=not args.no_amp,
        augment=not args.no_augment,
        seed=args.seed,
        resume=args.resume,
        work_dir=args.work_dir,
        preset=args.preset,
        build_args=build_args,
    )
    result = train(args.dataset, args.model, options)
    if result.model_path is not None:
        dice = ", ".join(f"{name} {value:.3f}" for name, value in result.card.provenance.validation.items())
        print(f"Saved {result.card.id} {result.card.version} to {result.model_path} (validation Dice: {dice or 'n/a'})")
        print(f"Logs and curves in {result.work_dir}")
    return 0
