"""The panel's worker child process: a cold first Segment against warm ones, and how fast Cancel returns.

Run: ``python bench/worker.py [--repeats N]``; prints Markdown tables. On the self-test's small real CT
(Testing/Data/ts_ct_sm, 30 x 64 x 64 voxels around the liver) with the self-test's tiny 3D U-Net, through
SegmentationLogic and a real MRML scene (slicer-core), as the Slicer panel runs them:

- first Segment in a fresh ProcessWorker (child start, imports, model load, inference), then warm ones
  (same model), then one with a second model (a reload in the warm child); the thread worker for reference;
- Cancel mid-Segment (the CT at 1 mm, about 13 s of sliding windows) and mid-Fine-tune: seconds from
  ``job.cancel()`` until the job is done (the panel's limit is 2 s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "Testing" / "helpers"))

from mrml_harness import create_harness  # noqa: E402

from SegNetsLib import mrml  # noqa: E402
from SegNetsLib.app.logic import SegmentationLogic  # noqa: E402
from SegNetsLib.app.process_worker import ProcessWorker  # noqa: E402
from SegNetsLib.app.selftest import add_tiny_model, load_case, paint_annotation  # noqa: E402
from SegNetsLib.app.worker import ThreadWorker  # noqa: E402
from SegNetsLib.core.volume import Volume  # noqa: E402
from SegNetsLib.models.library import ModelLibrary  # noqa: E402

DATA = ROOT / "Testing" / "Data"


def timed_segment(logic, volume_node, model: str) -> float:
    started = time.perf_counter()
    job = logic.start_segment(volume_node, model, device="cpu", roi="off")
    assert job.wait(600), "Segment did not finish"
    logic.finish_segment(job)
    return time.perf_counter() - started


def segment_table(scene, library, volume_node, repeats: int) -> list[str]:
    rows = ["| worker | first Segment (s) | warm Segment, same model (s) | second model (s) |", "|---|---|---|---|"]
    for name, make in (("child process", ProcessWorker), ("thread (reference)", ThreadWorker)):
        firsts, warms, others = [], [], []
        for _ in range(repeats):
            logic = SegmentationLogic(scene, library, make())
            try:
                firsts.append(timed_segment(logic, volume_node, "tiny"))
                warms += [timed_segment(logic, volume_node, "tiny") for _ in range(3)]
                others.append(timed_segment(logic, volume_node, "other"))
            finally:
                logic.worker.shutdown()
        rows.append(
            f"| {name} | {statistics.median(firsts):.2f} | {statistics.median(warms):.2f} | "
            f"{statistics.median(others):.2f} |"
        )
    return rows


def cancel_seconds(job, ready) -> float:
    deadline = time.monotonic() + 300
    while not ready(job):
        assert not job.done and time.monotonic() < deadline, "the job ended before it could be cancelled"
        job.wait(0.02)
    started = time.perf_counter()
    job.cancel()
    assert job.wait(30) and job.cancelled
    return time.perf_counter() - started


def cancel_table(scene, library, image, reference, repeats: int) -> list[str]:
    big = image.array.repeat(3, axis=0).repeat(3, axis=1).repeat(3, axis=2)
    large = mrml.volume_node_from_volume(
        scene, Volume(big, tuple(s / 3 for s in image.spacing), image.origin, image.direction), "CT 1 mm"
    )
    volume_node = mrml.volume_node_from_volume(scene, image, "CT")
    annotation, segment_id, _ = paint_annotation(scene, volume_node, reference)
    logic = SegmentationLogic(scene, library, ProcessWorker())
    segments, finetunes = [], []
    try:
        for _ in range(repeats):
            job = logic.start_segment(large, "tiny", device="cpu", roi="off")
            segments.append(cancel_seconds(job, lambda j: j.progress().stage == "segmenting"))
            job = logic.start_finetune(volume_node, annotation, [segment_id], "tiny", 120.0, device="cpu")
            finetunes.append(cancel_seconds(job, lambda j: j.progress().extra.get("iteration", 0) >= 1))
    finally:
        logic.worker.shutdown()
    rows = ["| Cancel | median (s) | max (s) | runs |", "|---|---|---|---|"]
    for name, values in (("mid-Segment", segments), ("mid-Fine-tune", finetunes)):
        rows.append(f"| {name} | {statistics.median(values):.2f} | {max(values):.2f} | {len(values)} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    harness = create_harness()
    image, reference = load_case(DATA)
    with tempfile.TemporaryDirectory(prefix="segnets-bench-worker-") as folder:
        library = ModelLibrary(Path(folder))
        add_tiny_model(library, "tiny")
        add_tiny_model(library, "other", seed=1)
        volume_node = mrml.volume_node_from_volume(harness.scene, image, "CT")
        print(f"Small real CT {image.shape_kji} voxels, tiny 3D U-Net, CPU; median of {args.repeats} fresh workers.\n")
        print("\n".join(segment_table(harness.scene, library, volume_node, args.repeats)))
        print()
        print("\n".join(cancel_table(harness.scene, library, image, reference, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
