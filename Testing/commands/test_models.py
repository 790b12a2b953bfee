"""``segnets models list | show | import | export | remove`` through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from model_helpers import TINY, outputs, snapshot, tiny_model

from SegNetsLib import cli
from SegNetsLib.models.library import ModelLibrary, load
from SegNetsLib.models.store import save

SEGNETS = Path(sys.executable).parent / "segnets"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["models", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_import_list_show_export_remove(tmp_path, model_library, capsys):
    net, card = tiny_model()
    state = tmp_path / "weights.safetensors"
    safetensors.torch.save_file(dict(net.state_dict()), str(state))

    code, out, err = run(
        capsys,
        "import",
        str(state),
        "--architecture",
        "unet3d",
        "--labels",
        "liver, tumor",
        "--build-args",
        json.dumps(TINY),
        "--id",
        "liver",
        "--name",
        "Liver CT",
    )
    assert (code, err) == (0, "")
    assert f"Imported liver 1.0.0 into {model_library / 'liver' / '1.0.0'}" in out
    save(net, card, tmp_path / "folder")
    assert run(capsys, "import", str(tmp_path / "folder"), "--version", "1.1.0", "--id", "liver")[0] == 0

    code, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "VERSION", "ARCHITECTURE", "LABELS", "BASE", "CREATED"]
    assert [line.split()[:3] for line in lines[1:3]] == [["liver", "1.0.0", "unet3d"], ["liver", "1.1.0", "unet3d"]]
    assert "liver, tumor" in lines[1] and "2 model versions" in lines[-1]

    code, out, err = run(capsys, "show", "liver@1.0.0")
    shown = json.loads(out)  # stdout is the card alone; the folder goes to stderr
    assert err.startswith("# ") and err.strip().endswith("1.0.0")
    assert code == 0 and shown["name"] == "Liver CT" and [l["name"] for l in shown["labels"]] == ["liver", "tumor"]
    assert json.loads(run(capsys, "show", "liver")[1].split("\n# ")[0])["version"] == "1.1.0"

    code, out, _ = run(capsys, "export", "liver", str(tmp_path / "liver.zip"), "--version", "1.0.0")
    assert code == 0 and (tmp_path / "liver.zip").is_file()
    exported, _ = load(tmp_path / "liver.zip")
    assert torch.equal(outputs(exported), outputs(net))

    code, out, _ = run(capsys, "remove", "liver", "--version", "1.0.0")
    assert code == 0 and ModelLibrary().versions("liver") == ["1.1.0"]
    code, out, _ = run(capsys, "remove", "liver")
    assert code == 0 and "1.1.0" in out and list(model_library.iterdir()) == []
    assert "No models in" in run(capsys, "list")[1]


def test_errors_exit_1_with_one_line(tmp_path, model_library, capsys):
    ModelLibrary().add(*tiny_model())
    before = snapshot(model_library)
    (tmp_path / "evil.pt").write_bytes(b"\x80\x02cposix\nsystem\nq\x00X\x05\x00\x00\x00touchq\x01\x85q\x02Rq\x03.")
    cases = [
        (["show", "spleen"], "segnets models: error: model 'spleen' is not in the library"),
        (["import", str(tmp_path / "missing.zip")], "missing.zip: no such file or folder."),
        (
            ["import", str(tmp_path / "evil.pt"), "--architecture", "unet3d", "--labels", "x"],
            "evil.pt: refused, it is not a plain PyTorch state dict of tensors (it asks to import and call posix.system",
        ),
        (["remove", "../etc"], "model id '../etc' is not valid"),
    ]
    for argv, expected in cases:
        code, out, err = run(capsys, *argv)
        assert code == 1 and out == "", argv
        assert expected in err and err.count("\n") == 1, err
    assert snapshot(model_library) == before


@pytest.mark.skipif(not SEGNETS.exists(), reason="the segnets console script is not installed in this environment")
def test_segnets_command_runs_as_a_program(tmp_path):
    library = ModelLibrary(tmp_path / "lib")
    net, card = tiny_model()
    library.add(net, card)
    result = subprocess.run(
        [str(SEGNETS), "models", "--library", str(library.root), "list"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert card.id in result.stdout and "1 model version" in result.stdout


def test_a_library_or_export_place_that_is_a_file_and_build_args_that_are_not_an_object_are_refused(
    tmp_path, model_library, capsys
):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, out, err = run(capsys, "--library", str(afile), "list")
    assert code == 1 and "afile: the model library is a file, not a folder." in err
    code, out, err = run(capsys, "export", "anything", str(afile / "m.zip"))
    assert code == 1 and "is a file, not a folder" in err
    with pytest.raises(SystemExit):
        run(capsys, "import", str(afile), "--architecture", "unet3d", "--labels", "liver", "--build-args", "[1, 2]")
    assert "is not a JSON object" in capsys.readouterr().err


def test_list_shows_each_version_by_the_folder_it_loads_from(model_library, capsys):
    """A version folder copied by hand keeps its card's id and version: the list showed the card's (1.0.0 twice),
    not the id@version that loads it and that 'remove' deletes."""
    library = ModelLibrary(model_library)
    net, card = tiny_model()
    first = library.add(net, card)
    copy = first.parent / "1.1.0"
    copy.mkdir()
    for path in first.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    code, out, _ = run(capsys, "list")
    rows = [line.split()[:2] for line in out.splitlines()[1:-1]]
    assert code == 0 and rows == [[card.id, "1.0.0"], [card.id, "1.1.0"]]
