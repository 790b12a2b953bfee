"""``segnets models list | show ID | import PATH | export ID PATH | remove ID``: the model library."""

from __future__ import annotations

import argparse
import sys

from SegNetsLib.commands.arguments import check_place, json_object
from SegNetsLib.core.constants import ARCHITECTURES, PRESETS
from SegNetsLib.core.constants import MODELS_ENV_VAR as ENV_VAR

# The model library (torch, jsonschema) is imported inside the handlers, so that building the parser stays fast.


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list, show, import, export and remove models in the model library",
        description=f"Manage the model library (default ~/.segnets/models, or ${ENV_VAR}).",
    )
    parser.add_argument("--library", metavar="DIR", help=f"library folder (default: ${ENV_VAR} or ~/.segnets/models)")
    actions = parser.add_subparsers(dest="action", required=True)

    actions.add_parser("list", help="list every model version").set_defaults(handler=list_models)

    show = actions.add_parser("show", help="print a model's card (JSON)")
    show.add_argument("model", metavar="ID[@VERSION]")
    show.add_argument("--version", help="version (default: the latest)")
    show.set_defaults(handler=show_model)

    add = actions.add_parser(
        "import",
        help="add a model folder, a model .zip, or bare weights (.safetensors/.pt/.pth)",
        description="Add a model to the library. Bare weights need --architecture and --labels. "
        ".pt/.pth files are read without running code (torch.load weights_only=True).",
    )
    add.add_argument("path", help="model folder, .zip, .safetensors, .pt or .pth")
    add.add_argument("--architecture", choices=ARCHITECTURES, help="network of bare weights")
    add.add_argument("--official", action="store_true", help="the file is an authors' ConResNet / 3D RU-Net checkpoint")
    add.add_argument("--in-channels", type=int, help="input channels of bare weights (default 1)")
    add.add_argument("--modality", help="modality of the input channels (default CT)")
    add.add_argument("--labels", help="comma-separated label names of bare weights, in output order (values 1, 2, ...)")
    add.add_argument(
        "--multi-label", action="store_true", default=None, help="one sigmoid per label instead of softmax"
    )
    add.add_argument("--preset", choices=PRESETS, help="network preset of bare weights (default: default)")
    add.add_argument(
        "--build-args", type=json_object, help="constructor overrides as JSON, e.g. '{\"base_channels\": 8}'"
    )
    add.add_argument("--id", help="id to import under (default: the card's)")
    add.add_argument("--version", help="version to import as (default: the card's)")
    add.add_argument("--name", help="display name")
    add.set_defaults(handler=import_model)

    export = actions.add_parser("export", help="write a model as a .zip or a folder")
    export.add_argument("model", metavar="ID[@VERSION]")
    export.add_argument("path", help="target .zip file or new folder")
    export.add_argument("--version", help="version (default: the latest)")
    export.set_defaults(handler=export_model)

    remove = actions.add_parser("remove", help="delete a model (every version unless --version)")
    remove.add_argument("model", metavar="ID")
    remove.add_argument("--version", help="delete only this version")
    remove.set_defaults(handler=remove_model)


def _reference(args: argparse.Namespace) -> tuple[str, str | None]:
    from SegNetsLib.card.versions import split_reference

    model_id, version = split_reference(args.model)
    return model_id, args.version or version


def list_models(args: argparse.Namespace) -> int:
    from SegNetsLib.models.library import ModelLibrary

    library = ModelLibrary(args.library)
    entries = library.list()
    if not entries:
        print(f"No models in {library.root}.")
        return 0
    rows = [("ID", "VERSION", "ARCHITECTURE", "LABELS", "BASE", "CREATED")]
    for entry in entries:
        card, provenance = entry.card, entry.card.provenance
        base = f"{provenance.base_model_id}@{provenance.base_model_version}" if provenance.base_model_id else "-"
        labels = ", ".join(label.name for label in card.labels)
        rows.append((entry.id, entry.version, card.architecture, labels, base, provenance.created or "-"))  # by folders
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"({len(entries)} model version{'s' if len(entries) != 1 else ''} in {library.root})")
    return 0


def show_model(args: argparse.Namespace) -> int:
    from SegNetsLib.card.schema import CARD_FILE, card_to_json, read_card
    from SegNetsLib.models.library import ModelLibrary

    library = ModelLibrary(args.library)
    model_id, version = _reference(args)
    folder = library.find(model_id, version)
    print(card_to_json(read_card(folder / CARD_FILE)), end="")  # stdout: the card alone, JSON a program can read
    print(f"# {folder}", file=sys.stderr)
    return 0


def import_model(args: argparse.Namespace) -> int:
    from SegNetsLib.models.library import ModelLibrary

    labels = [name.strip() for name in args.labels.split(",") if name.strip()] if args.labels else None
    entry = ModelLibrary(args.library).import_path(
        args.path,
        architecture=args.architecture,
        official=args.official,
        in_channels=args.in_channels,
        modality=args.modality,
        labels=labels,
        multi_label=args.multi_label,
        preset=args.preset,
        build_args=args.build_args,
        id=args.id,
        version=args.version,
        name=args.name,
    )
    print(f"Imported {entry.id} {entry.version} into {entry.path}")
    return 0


def export_model(args: argparse.Namespace) -> int:
    from SegNetsLib.models.library import ModelLibrary

    model_id, version = _reference(args)
    check_place(args.path)
    path = ModelLibrary(args.library).export(model_id, args.path, version)
    print(f"Exported {model_id} to {path}")
    return 0


def remove_model(args: argparse.Namespace) -> int:
    from SegNetsLib.models.library import ModelLibrary

    model_id, version = _reference(args)  # "id@version" as show and export take it
    removed = ModelLibrary(args.library).remove(model_id, version)
    print(f"Removed {model_id} version{'s' if len(removed) > 1 else ''} {', '.join(removed)}")
    return 0
