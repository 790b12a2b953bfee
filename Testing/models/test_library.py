"""The model library: location, listing, versions for fine-tuned models, export and removal."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from model_helpers import outputs, snapshot, tiny_model

from SegNetsLib.card.factory import derive_card, next_version
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models.library import ModelLibrary, default_root, load


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
