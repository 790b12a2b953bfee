"""The model library: location, listing, versions for fine-tuned models, export and removal."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest
import torch
from fuzz_helpers import one_sentence
from model_helpers import outputs, snapshot, tiny_model

from SegNetsLib.card.factory import derive_card, next_version, slug
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models import store
from SegNetsLib.models.library import ModelLibrary, default_root, load
from SegNetsLib.models.store import save


def test_library_location(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGNETS_MODELS", raising=False)
    assert default_root() == Path.home() / ".segnets" / "models"
    monkeypatch.setenv("SEGNETS_MODELS", str(tmp_path / "env"))
    assert ModelLibrary().root == tmp_path / "env"
    assert ModelLibrary(tmp_path / "settings").root == tmp_path / "settings"  # Slicer's module setting wins


def test_fine_tuned_versions_never_overwrite_and_name_their_base(tmp_path):
    library = ModelLibrary(tmp_path)
    base_net, base = tiny_model()
    library.add(base_net, base)
    tuned_net, _ = tiny_model(seed=11)
    first = derive_card(base, version=next_version(library, base), iterations=10)
    library.add(tuned_net, first)
    # deriving again from the same base skips the version already taken
    second = derive_card(base, version=next_version(library, base), iterations=20)
    assert (first.version, second.version) == ("1.1.0", "1.2.0")
    library.add(tiny_model(seed=12)[0], second)
    assert library.versions(base.id) == ["1.0.0", "1.1.0", "1.2.0"]
    assert torch.equal(outputs(library.load(base.id, "1.0.0")[0]), outputs(base_net))  # base intact
    card = library.card(base.id, "1.1.0")
    assert (card.provenance.base_model_id, card.provenance.base_model_version) == (base.id, "1.0.0")
    assert next_version(library, base, part="major") == "2.0.0"


def test_list_skips_partial_and_broken_folders(tmp_path, caplog):
    library = ModelLibrary(tmp_path)
    library.add(*tiny_model(id="good"))
    broken = library.add(*tiny_model(id="broken"))
    (broken / "card.json").write_text(json.dumps({"id": "broken"}))
    (tmp_path / ".good.x.partial").mkdir()  # what an interrupted write leaves at worst
    (tmp_path / "good" / "not-a-version").mkdir()
    with caplog.at_level(logging.WARNING):
        entries = library.list()
    assert [(e.id, e.version) for e in entries] == [("good", "1.0.0")]
    assert "field 'name' is required but missing" in caplog.text


def test_export_folder_and_remove(tmp_path):
    library = ModelLibrary(tmp_path / "lib")
    net, card = tiny_model()
    library.add(net, card)
    library.add(tiny_model(seed=3)[0], derive_card(card, version="1.0.1"))
    exported = library.export(card.id, tmp_path / "out", version="1.0.0")
    assert torch.equal(outputs(load(exported)[0]), outputs(net))
    with pytest.raises(SegNetsError, match="already exists"):
        library.export(card.id, tmp_path / "out")
    with pytest.raises(SegNetsError, match="has no version 9.9.9"):
        library.remove(card.id, "9.9.9")
    before = snapshot(library.root)
    for bad in ("../lib", "a/b", ""):
        with pytest.raises(SegNetsError, match="is not valid"):
            library.remove(bad)
    assert snapshot(library.root) == before
    assert library.remove(card.id, "1.0.0") == ["1.0.0"]
    assert library.versions(card.id) == ["1.0.1"]
    assert library.remove(card.id) == ["1.0.1"]
    assert list(library.root.iterdir()) == []
    with pytest.raises(SegNetsError, match="is not in the library"):
        library.remove(card.id)


def test_a_model_is_removed_by_the_name_it_was_saved_under(tmp_path):
    library = ModelLibrary(tmp_path / "lib")
    net, card = tiny_model()
    card.id = "liver-patient-12"
    library.add(net, card)
    library.add(tiny_model(seed=3)[0], derive_card(card, version="1.1.0"))
    assert library.remove("Liver (patient 12)", "1.0.0") == ["1.0.0"]
    assert library.versions("liver-patient-12") == ["1.1.0"]
    assert library.remove("liver_patient_12") == ["1.1.0"] and not (tmp_path / "lib" / "liver-patient-12").exists()
    assert not [p for p in (tmp_path / "lib").iterdir() if p.name.endswith(".removing")]


def test_names_without_latin_letters_get_ids_of_their_own(tmp_path):
    """Every name without ASCII letters became the id 'model': a lookup by one such name found another's model."""
    library = ModelLibrary(tmp_path)
    net, card = tiny_model(name="Лёгкие", labels=("lung",))
    library.add(net, card)
    assert len({slug("Лёгкие"), slug("肝臓"), slug("Лёгкие 2"), slug("肝臓 2")}) == 4
    assert library.find("Лёгкие") == tmp_path / card.id / "1.0.0"
    with pytest.raises(SegNetsError, match="is not in the library"):
        library.find("肝臓")


def test_two_saves_of_the_same_version_at_once_keep_the_first_and_refuse_the_second(tmp_path, monkeypatch):
    """Both saves passed the 'already in the library' check; the second one's rename failed with a bare OSError
    (Directory not empty) instead of saying the version is taken."""
    library = ModelLibrary(tmp_path)
    both_written = threading.Barrier(2, timeout=30)
    write = store.write_weights

    def write_then_wait(net, path):
        write(net, path)
        both_written.wait()

    monkeypatch.setattr(store, "write_weights", write_then_wait)
    outcomes: dict[int, object] = {}

    def add(seed):
        net, card = tiny_model(seed)
        try:
            outcomes[seed] = library.add(net, card)
        except Exception as error:  # noqa: BLE001 - the test reports whatever the second save raised
            outcomes[seed] = error

    threads = [threading.Thread(target=add, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [value for value in outcomes.values() if isinstance(value, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], SegNetsError), errors
    assert "already exists" in one_sentence(errors[0])
    assert [p.name for p in (tmp_path / "unet3d-liver-tumor").iterdir()] == ["1.0.0"]


def test_an_import_whose_id_names_another_model_is_refused(tmp_path):
    """A downloaded model reusing the id of the user's own (other labels, higher version) became its newest
    version silently, so the id then segmented with the stranger's network."""
    library = ModelLibrary(tmp_path / "library")
    net, card = tiny_model(labels=("liver", "tumor"), id="liver-ct")
    library.add(net, card)
    other_net, other = tiny_model(labels=("spleen",), id="liver-ct", version="9.0.0")
    download = save(other_net, other, tmp_path / "download")
    with pytest.raises(SegNetsError, match="names another model in the library") as refused:
        library.import_path(download)
    one_sentence(refused.value)
    assert library.versions("liver-ct") == ["1.0.0"]
    assert library.import_path(download, id="spleen-ct").id == "spleen-ct"
    same_net, same = tiny_model(seed=3, id="liver-ct", version="1.1.0")
    assert library.import_path(save(same_net, same, tmp_path / "newer")).version == "1.1.0"


def test_a_model_saved_under_an_accented_name_before_ids_dropped_accents_is_still_found(tmp_path):
    """'Lebér' was saved as 'leb-r' (the accent became '-'); its id is now 'leber', and a lookup by the name it was
    saved under must still find the model kept under the old id."""
    library = ModelLibrary(tmp_path)
    net, card = tiny_model(name="Lebér", id="leb-r")
    library.add(net, card)
    assert slug("Lebér") == "leber"
    assert library.find("Lebér") == tmp_path / "leb-r" / "1.0.0"
    with pytest.raises(SegNetsError, match="is not in the library"):
        library.find("Лёгкие")  # a name without an ASCII form never falls back to 'model' or the like


def test_a_missing_model_path_is_named_as_a_path_not_looked_up_in_the_library(model_library, tmp_path, monkeypatch):
    net, card = tiny_model()
    card.id = "my-model"
    ModelLibrary(model_library).add(net, card)
    monkeypatch.chdir(tmp_path)  # no ./my-model folder here: the library's my-model must not stand in for it
    written = ("./my-model", str(tmp_path / "gone"), "gone.zip", "../my-model@1.0.0", "C:\\my-model", ".\\my-model")
    written += ("my/model", "my\\model", "my-model/", "models/my-model@1.0.0")  # a separator: a folder, never an id
    for reference in written:  # Windows spellings too: a drive, or backslashes
        with pytest.raises(SegNetsError) as raised:
            load(reference)
        assert str(raised.value) == f"{reference}: no such model folder or .zip."
    assert load("my-model")[1].id == "my-model"  # the id itself still finds the library's model


def test_a_blank_model_reference_is_refused_not_read_as_the_current_folder(model_library, tmp_path, monkeypatch):
    """``--model ""`` was the current folder (Path("") is "."), refused for a card.json the user never named."""
    monkeypatch.chdir(tmp_path)
    for reference in ("", " ", "\t"):
        with pytest.raises(SegNetsError) as raised:
            load(reference)
        assert one_sentence(raised.value).startswith("the model reference is blank")


def test_a_model_path_under_the_home_folder_written_with_a_tilde_is_found(tmp_path, monkeypatch):
    """'--model=~/m' reaches SegNets unexpanded (the shell expands no tilde after '='), and so does a path from Python."""
    monkeypatch.setenv("HOME", str(tmp_path))
    net, card = tiny_model()
    store.write_model_zip(save(net, card, tmp_path / "models" / "m"), tmp_path / "m.zip")
    assert load("~/models/m")[1].id == card.id
    assert load("~/m.zip")[1].id == card.id
    with pytest.raises(SegNetsError, match=r"^~/gone: no such model folder or \.zip\.$"):
        load("~/gone")


def test_a_model_reference_too_long_for_a_file_name_is_a_one_sentence_error(model_library):
    """A reference longer than a file name may be (255 bytes) is no folder and no library id, not an OSError."""
    for reference in ("m" * 300, "./" + "m" * 300):
        with pytest.raises(SegNetsError) as raised:
            load(reference)
        assert one_sentence(raised.value).endswith(("shows what is).", "no such model folder or .zip."))
