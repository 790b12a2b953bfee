"""Segment a volume, or every volume in a folder, headless, with Slicer's own MRML.

    Slicer --no-main-window --python-script SegNets/Scripts/segnets_batch.py \\
        --input DIR_OR_FILE --model ID[@VERSION] --output DIR [--device auto|cpu|cuda:N] [--roi auto|off] [--overwrite]

Writes ``<output>/<name>.seg.nrrd`` per volume (named, colored segments with terminology; reference
geometry set) and ``<output>/summary.json``; an existing one is replaced only with ``--overwrite``.
Exits 1 when any volume failed or anything else went wrong (printed as one line; Slicer ``--python-script``
does not exit by itself), 2 on bad arguments.
Model work runs in the SegNets worker child process, as from the panel.
Runs the same way under plain Python with PyPI's slicer-core (no Slicer application), e.g. in CI.
The ``segnets segment`` command does the same without any Slicer code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path


def _make_segnetslib_importable() -> None:
    """Clone: SegNets/Scripts/ -> repository root; installed: SegNetsScripts/ -> qt-scripted-modules/."""
    here = Path(__file__).resolve().parent
    for folder in (here.parent, here.parent.parent):
        if (folder / "SegNetsLib" / "__init__.py").is_file():
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            return


_make_segnetslib_importable()

SUMMARY_FILE = "summary.json"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="segnets_batch.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="a volume file or a folder of volume files")
    parser.add_argument("--model", required=True, help="library id[@version], or a model folder or .zip")
    parser.add_argument("--output", required=True, type=Path, help="folder for the .seg.nrrd files and summary.json")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--roi", choices=("auto", "off"), default="auto", help="RoI localization (default: auto)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace .seg.nrrd files and summary.json already in the output folder (default: refuse)",
    )
    parser.add_argument(
        "--library", type=Path, help="model library folder (default: $SEGNETS_MODELS or ~/.segnets/models)"
    )
    return parser.parse_args(argv)


def input_files(path: Path) -> list[Path]:
    """The volumes to segment: ``path`` itself, or the volume files and DICOM series directly inside it (one file
    per series stands for it)."""
    from SegNetsLib.core.errors import SegNetsError
    from SegNetsLib.imageio.segmentations import refuse_segmentation_input
    from SegNetsLib.imageio.volumes import listed_volumes

    if path.is_file():
        refuse_segmentation_input(path)
        return [path]
    if path.is_dir():
        files = listed_volumes(path)
        if files:
            return files
        raise SegNetsError(f"{path}: the folder holds no volume files (.nii.gz, .nrrd, .mha ...) and no DICOM series.")
    raise SegNetsError(f"{path}: no such file or folder.")


@contextlib.contextmanager
def stops_held():
    """Hold Ctrl-C and SIGTERM until the block is over, then act on the first that came.

    An exception raised while VTK initialises a module (its C code calls back into Python) crashes the process with
    a segmentation fault, so VTK's modules are imported with stops held. Only signals with a Python handler are
    held: a default handler ends the process without raising anything.
    """
    if threading.current_thread() is not threading.main_thread():  # signal handlers are set there only
        yield
        return
    came: list[int] = []
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(s))]
    previous = {s: signal.signal(s, lambda signum, frame: came.append(signum)) for s in held}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if came:
            signal.raise_signal(came[0])  # its own handler now raises KeyboardInterrupt or Terminated


def mrml_context():
    """(scene, volumes logic, keep-alive): the running Slicer's, or a standalone slicer-core scene with all of
    VTK's modules imported (``slicer.util`` imports them at the first volume otherwise), with stops held.

    The third item owns the standalone application and module logics; keep it while the scene is used.
    """
    with stops_held():
        import slicer

        if hasattr(slicer, "app"):
            return slicer.mrmlScene, slicer.modules.volumes.logic(), None
        import vtk.util.numpy_support  # noqa: F401 - slicer.util.arrayFromVolume's import of every VTK module

        from SegNetsLib.mrml.standalone import create_scene

        standalone = create_scene()
        return standalone.scene, standalone.volumes_logic, standalone


def _stem(path: Path) -> str:
    """The file name without its volume suffix (``ct.nii.gz`` -> ``ct``); for a DICOM file, its series' stem."""
    from SegNetsLib.imageio.volumes import input_stem

    return input_stem(path)


def output_targets(sources: list[Path], output: Path) -> list[Path]:
    """``<output>/<name>.seg.nrrd`` per source; raises when two sources would be written to the same file
    (``ct.nii.gz`` and ``ct.nrrd``; names compared case-insensitively, as macOS and Windows file systems do)."""
    from SegNetsLib.core.errors import SegNetsError

    targets, seen = [], {}
    for source in sources:
        target = output / f"{_stem(source)}.seg.nrrd"
        first = seen.setdefault(target.name.casefold(), source)
        if first is not source:
            raise SegNetsError(
                f"{first.name} and {source.name} would both be written as {target}; "
                "rename one of them or segment them into separate output folders."
            )
        targets.append(target)
    return targets


def resolve_model(logic, reference: str) -> Path:
    """The model folder or .zip that ``reference`` (id[@version] or a path) names, its card read: a missing or
    damaged model (folder or .zip) is one error before any volume, not the same error for every volume of the
    folder."""
    from SegNetsLib.app.logic import card_of
    from SegNetsLib.card.versions import split_reference

    model, version = split_reference(reference) if not Path(reference).exists() else (reference, None)
    path = logic.model_path(model, version)
    card_of(path)
    return path


def segment_file(logic, volumes_logic, source: Path, target: Path, model: Path, args: argparse.Namespace) -> dict:
    """Segment one file into ``target`` with the ``model`` folder or .zip; the nodes are removed from the scene
    afterwards."""
    from SegNetsLib import mrml

    started = time.monotonic()
    volume_node = mrml.load_volume_node(volumes_logic, source, _stem(source))
    created = [volume_node]
    try:
        job = logic.start_segment(volume_node, str(model), device=args.device, roi=args.roi)
        stage = None
        while not job.wait(0.5):
            snapshot = job.progress()
            if snapshot.stage and snapshot.stage != stage:  # blank until the worker child takes the job
                stage = snapshot.stage
                print(f"  {source.name}: {stage} ({snapshot.fraction:.0%})", flush=True)
        result = logic.finish_segment(job)
        for note in result.notes:
            print(f"  {source.name}: note: {note}", flush=True)
        created += [result.segmentation_node] + ([result.roi_node] if result.roi_node is not None else [])
        mrml.save_segmentation_node(result.segmentation_node, target)
        segmentation = result.segmentation_node.GetSegmentation()
        return {
            "input": str(source),
            "output": str(target),
            "model": f"{result.card.id}@{result.card.version}",
            "seconds": round(time.monotonic() - started, 2),
            "segments": [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())],
            "rois": [list(map(int, box)) for box in result.rois],
            "notes": result.notes,
        }
    finally:
        remove_nodes(created)


def remove_nodes(nodes: list) -> None:
    """Remove ``nodes`` from their scene with their subject hierarchy items and display and storage nodes: a folder
    of volumes leaves the scene as it found it (slicer-core keeps the item of a removed node, which then logs
    "DataNodeCache inconsistency found" errors)."""
    import slicer

    from SegNetsLib.mrml.volumes import remove_temporary_node

    for node in nodes:
        hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
        item = hierarchy.GetItemByDataNode(node) if hierarchy is not None else 0
        if item:
            hierarchy.RemoveItem(item, False, False)  # the item only; its node goes next, with what was made for it
        remove_temporary_node(node)


def main(argv: list[str]) -> int:
    """:func:`run`, with any error outside one volume's segmentation (torch missing, an unwritable output
    folder) printed in one line and returned as 1; Ctrl-C returns 130 and SIGTERM 143, once the write under way
    has removed its temporary file and the worker child has ended."""
    from SegNetsLib.cli import Terminated

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    in_main = threading.current_thread() is threading.main_thread()  # signal handlers are set there only
    previous = signal.signal(signal.SIGTERM, terminate) if in_main else None
    try:
        return run(argv)
    except SystemExit as stop:  # argparse's usage errors
        return stop.code if isinstance(stop.code, int) else 2
    except KeyboardInterrupt:
        print("segnets_batch: interrupted; no file was left half-written.", file=sys.stderr, flush=True)
        return 130
    except Terminated:
        print("segnets_batch: terminated; no file was left half-written.", file=sys.stderr, flush=True)
        return 128 + signal.SIGTERM
    except BaseException as error:  # noqa: BLE001 - Slicer would otherwise keep running with no window
        from SegNetsLib.core.errors import SegNetsError

        message = str(error) if isinstance(error, SegNetsError) else f"{type(error).__name__}: {error}"
        print(f"segnets_batch: error: {message}", file=sys.stderr, flush=True)
        return 1
    finally:
        if in_main:
            with contextlib.suppress(KeyboardInterrupt, Terminated):  # a stop once the batch is over changes nothing
                signal.signal(signal.SIGTERM, previous)


def exit_process(code: int) -> None:
    """End the process with ``code``: through Slicer when the script runs inside Slicer, else sys.exit."""
    slicer = sys.modules.get("slicer")
    if getattr(slicer, "app", None) is not None:
        slicer.util.exit(code)
    else:
        sys.exit(code)


def run(argv: list[str]) -> int:
    """Segment every input; 0 when all succeeded, 1 when any failed (see summary.json)."""
    from SegNetsLib.commands.arguments import refuse_existing
    from SegNetsLib.core.atomic import atomic_file, writable_folder
    from SegNetsLib.core.errors import SegNetsError

    args = parse_args(argv)
    try:
        sources = input_files(args.input)
        targets = output_targets(sources, args.output)
        if not args.overwrite:  # summary.json too: an earlier run's record of its volumes
            refuse_existing([*targets, args.output / SUMMARY_FILE])
        from SegNetsLib.runtime.devices import resolve_device  # torch: once the files make sense

        resolve_device(args.device)  # an unknown device, or one this machine lacks, would fail every volume
    except SegNetsError as error:
        print(f"segnets_batch: error: {error}", file=sys.stderr)
        return 2
    from SegNetsLib.app.logic import SegmentationLogic
    from SegNetsLib.app.process_worker import ProcessWorker
    from SegNetsLib.models.library import ModelLibrary

    if args.output.exists() and not args.output.is_dir():  # e.g. an output file named where a folder goes
        raise SegNetsError(f"{args.output} is a file, not a folder; give another output folder.")
    scene, volumes_logic, _logics = mrml_context()
    logic = SegmentationLogic(scene, ModelLibrary(args.library), ProcessWorker())
    results, failures = [], []
    try:
        model = resolve_model(logic, args.model)
        try:  # before any model work: an unusable output folder would fail every volume
            writable_folder(args.output)
        except OSError as error:  # a file where a parent folder goes, a read-only disk, no permission
            raise SegNetsError(
                f"{args.output}: the folder cannot be made or written to ({error.strerror or error}); "
                "give another output folder."
            ) from error
        for source, target in zip(sources, targets):
            print(f"segnets_batch: {source} -> {target}", flush=True)
            try:
                results.append(segment_file(logic, volumes_logic, source, target, model, args))
            except Exception as error:  # one bad volume must not stop the batch; it is reported
                message = str(error) if isinstance(error, SegNetsError) else f"{type(error).__name__}: {error}"
                named = message if message.startswith(f"{source}: ") else f"{source}: {message}"
                print(f"segnets_batch: error: {named}", file=sys.stderr, flush=True)
                failures.append({"input": str(source), "error": message})
    finally:
        logic.worker.shutdown()
    summary = {"model": args.model, "device": args.device, "roi": args.roi, "succeeded": results, "failed": failures}
    with atomic_file(args.output / SUMMARY_FILE) as partial:
        partial.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"segnets_batch: {len(results)} segmented, {len(failures)} failed; summary in {args.output / SUMMARY_FILE}")
    return 1 if failures else 0


if __name__ == "__main__":
    exit_process(main(sys.argv[1:]))
