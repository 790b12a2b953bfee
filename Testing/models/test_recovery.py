"""Nothing lost: a model the library cannot take is kept aside and the error says where; kill -9 during a
library write leaves the library readable with its old state."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from fuzz_helpers import REPO, full_disk, one_sentence, read_only_folder
from model_helpers import outputs, snapshot, tiny_model
from robustness_cases import expect

from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.options import FinetuneOptions
from SegNetsLib.finetune.run import finetune
from SegNetsLib.finetune.save import save_result
from SegNetsLib.models.library import RECOVERED, ModelKept, ModelLibrary, load
from SegNetsLib.models.store import build_network


def _kept_model_loads_with_the_same_outputs(error: ModelKept, net) -> None:
    message = one_sentence(error)
    assert str(error.path) in message and "segnets models import" in message
    kept, _ = load(error.path)
    assert torch.equal(outputs(kept), outputs(net))


def test_version_taken_meanwhile_keeps_the_model_aside(tmp_path):
    library = ModelLibrary(tmp_path / "models")
    first, card = tiny_model(seed=0)
    library.add(first, card)
    before = snapshot(library.root)
    second, _ = tiny_model(seed=1)
    with pytest.raises(ModelKept) as kept:
        library.add_or_keep(second, card)  # same id and version: someone saved it first
    expect("version-taken", str(kept.value))
    _kept_model_loads_with_the_same_outputs(kept.value, second)
    assert kept.value.path.parent == tmp_path / RECOVERED
    assert snapshot(library.root) == before  # the library's model is untouched


def test_read_only_library_keeps_the_model_aside(tmp_path):
    library = ModelLibrary(tmp_path / "models")
    library.root.mkdir()
    net, card = tiny_model()
    with read_only_folder(library.root), pytest.raises(ModelKept) as kept:
        library.add_or_keep(net, card)
    expect("library-read-only", str(kept.value))
    _kept_model_loads_with_the_same_outputs(kept.value, net)
    assert library.list() == []


def test_full_disk_keeps_the_model_aside(tmp_path):
    library = ModelLibrary(tmp_path / "models")
    net, card = tiny_model()
    card.build_args = {"base_channels": 16, "levels": 3}  # about 1.6 MB of weights for a 256 KiB disk
    torch.manual_seed(0)
    net = build_network(card)
    with full_disk(library.root):
        with pytest.raises(ModelKept) as kept:
            library.add_or_keep(net, card)
        assert library.list() == [] and not any(library.root.iterdir())  # no partial folder left on it
    expect("disk-full", str(kept.value))
    _kept_model_loads_with_the_same_outputs(kept.value, net)


def test_finetune_result_is_kept_when_the_library_cannot_take_it(tmp_path):
    rng = np.random.default_rng(0)
    z, y, x = np.indices((16, 24, 24))
    truth = ((z - 8) / 6) ** 2 + ((y - 12) / 8) ** 2 + ((x - 12) / 7) ** 2 <= 1
    image = Volume((100.0 * truth + rng.normal(0, 10, truth.shape)).astype(np.float32), (2.0, 2.0, 2.0))
    labels = np.zeros(truth.shape, np.uint8)
    labels[[4, 8, 12]] = truth[[4, 8, 12]]
    options = FinetuneOptions(
        iterations=2,
        device="cpu",
        patch_size=(8, 16, 16),
        batch_size=1,
        scratch_downsample=1,
        scratch_build_args={"base_channels": 2, "levels": 2},
        refine=False,
    )
    result = finetune(image, image.with_array(labels), "unet3d", options)
    library = ModelLibrary(tmp_path / "models")
    library.root.mkdir()
    with read_only_folder(library.root), pytest.raises(ModelKept) as kept:
        save_result(result, "phantom", library)
    _kept_model_loads_with_the_same_outputs(kept.value, result.net)


_WRITER = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {helpers!r})
    from model_helpers import tiny_model
    from SegNetsLib.models.library import ModelLibrary
    from SegNetsLib.models.store import build_network
    library = ModelLibrary({root!r})
    net, card = tiny_model()
    card.build_args = {{"base_channels": 24, "levels": 3}}
    net = build_network(card)
    print("ready", flush=True)
    for patch in range(1, 1000):
        card.version = f"1.0.{{patch}}"
        library.add(net, card)
        library.export(card.id, {export!r} + f"/{{patch}}.zip", card.version)
        library.remove(card.id, card.version)
    """
)


@pytest.mark.parametrize("kills", [2, pytest.param(8, marks=pytest.mark.slow)])
def test_kill_9_during_library_writes_leaves_the_old_state_readable(tmp_path, kills):
    """A writer adding, exporting and removing 3.5 MB models is killed at random points (each kill starts
    a new Python with torch: 2 in the default suite, 8 under slow)."""
    library = ModelLibrary(tmp_path / "models")
    net, card = tiny_model()
    library.add(net, card)
    old = snapshot(library.root / card.id / card.version)
    exports = tmp_path / "exports"
    exports.mkdir()
    code = _WRITER.format(helpers=str(REPO / "Testing" / "helpers"), root=str(library.root), export=str(exports))
    rng = random.Random(0)
    for _ in range(kills):
        writer = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={"OMP_NUM_THREADS": "1"}
        )
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 1.0))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        entries = library.list()
        assert (card.id, card.version) in [(e.id, e.version) for e in entries]
        for entry in entries:  # every version the library lists is complete
            load(entry.path)
        assert snapshot(library.root / card.id / card.version) == old
        expect("kill-9", f"{len(entries)} versions listed and loaded")
        for archive in exports.iterdir():  # every zip written under its name is complete
            if not archive.name.startswith("."):  # a killed write leaves only a hidden ".name.partial"
                load(archive)
            archive.unlink()
        for entry in entries:
            if entry.version != card.version:
                library.remove(entry.id, entry.version)
