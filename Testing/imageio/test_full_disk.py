"""Writes that run out of room (a full disk, here a file size limit on a real process): one sentence naming the
file, and nothing at that name, nor a temporary file beside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

resource = pytest.importorskip("resource")  # POSIX: the file size limit of a process
ROOT = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 64 * 1024  # every file below is larger (random voxels do not compress)

WRITE = """
import sys
import numpy as np
from SegNetsLib.card.card import LabelInfo
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.segmentations import write_probabilities, write_segmentation
from SegNetsLib.imageio.volumes import write_volume

target, rng = sys.argv[1], np.random.default_rng(0)
try:
    if target.endswith(".seg.nrrd"):
        labels = [LabelInfo(1, "a", (1, 0, 0)), LabelInfo(2, "b", (0, 1, 0))]
        write_segmentation(Volume(rng.integers(0, 3, (120, 64, 64)).astype(np.uint8)), labels, target)
    elif "probabilities" in target:
        write_probabilities(Volume(rng.random((2, 40, 64, 64)).astype(np.float32)), target)
    else:
        write_volume(Volume(rng.normal(size=(40, 64, 64)).astype(np.float32)), target)
except SegNetsError as error:
    print(error)
    sys.exit(1)
"""


def _limit(size: int = LIMIT_BYTES) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))  # Python ignores SIGXFSZ: writes fail


@pytest.mark.parametrize("room", [LIMIT_BYTES, 100, 0], ids=["midway", "in-the-header", "disk-already-full"])
@pytest.mark.parametrize(
    "name", ["out.nii.gz", "out.nii", "out.nrrd", "out.mha", "out.seg.nrrd", "probabilities.nii.gz"]
)
def test_a_write_that_runs_out_of_room_names_the_file_and_leaves_nothing(tmp_path, name, room):
    """``room``: the bytes a file may grow to; 0 is a disk full before the write (NIfTI left an empty file)."""
    target = tmp_path / name
    result = subprocess.run(
        [sys.executable, "-c", WRITE, str(target)], cwd=ROOT, capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: _limit(room),
    )  # fmt: skip
    assert result.returncode == 1, (result.stdout, result.stderr)
    message = result.stdout.strip()
    assert message.startswith(f"{target}: could not be written (") and message.endswith("nothing was left there.")
    assert "\n" not in message and ".partial" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_runs_out_of_room_names_its_place_and_leaves_nothing(tmp_path):
    from model_helpers import tiny_model

    from SegNetsLib.core.errors import SegNetsError
    from SegNetsLib.models.store import copy_model_folder, save, write_model_zip

    net, card = tiny_model()
    saved = save(net, card, tmp_path / "saved")
    out = tmp_path / "out"
    out.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))  # this process, for the three writes only
    try:
        for write, target in [
            (lambda t: save(net, card, t), out / "model"),
            (lambda t: write_model_zip(saved, t), out / "model.zip"),
            (lambda t: copy_model_folder(saved, t), out / "copy"),
        ]:
            with pytest.raises(SegNetsError) as caught:
                write(target)
            assert str(caught.value) == f"{target}: could not be written (File too large); nothing was left there."
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert list(out.iterdir()) == []
