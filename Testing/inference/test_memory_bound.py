"""Inference of a large volume on the CPU stays within a documented memory bound.

The bound (docs/robustness.md): the peak resident memory of ``Predictor.predict`` grows by at most twice the
volume's size as float32 plus 64 MiB, whole-volume mode on the input's own grid (the worst case; RoI mode
and a coarser network grid hold less). Sliding windows and slab-wise statistics keep it there: one extra
whole-volume float64 copy (twice the float32 size) would break it.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
from fuzz_helpers import run_limited
from robustness_cases import expect

from SegNetsLib.core.volume import Volume
from SegNetsLib.inference.preprocess import ChannelNormalizer, Preprocessed
from SegNetsLib.inference.source_grid import probabilities_on_source

SHAPE = (128, 224, 224)  # 6.4 M voxels: 12 MiB as int16, 24.5 MiB as float32


def test_whole_volume_inference_stays_within_twice_the_float32_volume():
    result = run_limited(
        f"""
        import dataclasses, resource, sys
        sys.path.insert(0, "Testing/helpers")
        import numpy as np
        from inference_helpers import TINY_CARD, tiny_unet
        from SegNetsLib.core.volume import Volume
        from SegNetsLib.inference.predictor import Predictor

        predictor = Predictor(tiny_unet(), dataclasses.replace(TINY_CARD, target_spacing=None), "cpu")
        array = np.random.default_rng(0).normal(0, 300, {SHAPE}).astype(np.int16)
        predictor.predict(Volume(array[:16, :48, :48].copy()), roi="off")  # warm: first-call allocations
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        prediction = predictor.predict(Volume(array, (1.0, 1.0, 1.5)), roi="off")
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        assert prediction.labelmap.array.shape == {SHAPE}
        print("GROWN", grown, array.size * 4)
        """
    )
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("GROWN")), None)
    assert line, result.stdout + result.stderr[-3000:]
    grown, float32_bytes = (int(v) for v in line.split()[1:])
    bound = 2 * float32_bytes + 64 * 1024**2
    print(f"peak growth {grown / 2**20:.1f} MiB, bound {bound / 2**20:.1f} MiB")
    expect("inference-memory", f"peak growth {grown / 2**20:.1f} MiB of {bound / 2**20:.1f} MiB allowed")
    assert grown <= bound, (grown, bound)


def test_probabilities_on_the_input_grid_hold_one_channel_beyond_the_output():
    """Mapping per-class probabilities back keeps at most one channel besides the (C, k, j, i) output."""
    source = Volume(np.zeros((32, 64, 64), np.float32))
    grid = Volume(np.zeros((1, 16, 32, 32), np.float32), (2.0, 2.0, 2.0), (0.5, 0.5, 0.5))
    probs = np.full((4, 16, 32, 32), 0.25, np.float32)
    tracemalloc.start()
    try:
        out = probabilities_on_source(probs, Preprocessed(grid, (ChannelNormalizer(),), source))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.allclose(out.array, 0.25)
    assert peak < 1.5 * out.array.nbytes  # the output and one resampled channel (4 channels here)


def test_writing_probabilities_holds_two_copies_of_them():
    """A .nii.gz of per-class probabilities holds SimpleITK's interleaved copy and ITK's planar one, not numpy's
    interleaved copy beside both (3 classes of a clinical CT take 530 MB per copy)."""
    result = run_limited(
        """
        import resource, tempfile
        import numpy as np
        from SegNetsLib.core.volume import Volume
        from SegNetsLib.imageio.segmentations import write_probabilities

        folder = tempfile.mkdtemp()
        probabilities = np.full((3, 64, 256, 256), 1 / 3, np.float32)
        write_probabilities(Volume(probabilities[:, :8, :32, :32].copy()), folder + "/warm.nii.gz")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        write_probabilities(Volume(probabilities), folder + "/probabilities.nii.gz")
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        print("GROWN", grown, probabilities.nbytes)
        """
    )
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("GROWN")), None)
    assert line, result.stdout + result.stderr[-3000:]
    grown, nbytes = (int(v) for v in line.split()[1:])
    print(f"peak growth {grown / nbytes:.2f} x the probabilities")
    expect("probabilities-memory", f"peak growth {grown / nbytes:.2f} x the probabilities, under 2.4")
    assert grown < 2.4 * nbytes, grown / nbytes
