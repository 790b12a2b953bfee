"""SegNets Web's volume selector: ``--data FOLDER`` holding several volumes (files and DICOM series) lets the page
load any of them in place of the one shown, as an upload does (painting and result discarded, said in the page); an
unusable volume, or a choice while a job runs, is refused in one sentence with the scene and the selector as they
were. A ``--data`` file, or a folder of one volume, offers no choice."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from dicom_helpers import ct_crop, write_series
from fuzz_helpers import one_sentence

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models.library import ModelLibrary


@pytest.fixture
def folder(tmp_path, data_dir):
    """A --data folder: a DICOM series (16 x 32 x 32), the 30 x 64 x 64 CT crop and a .nii.gz that is no NIfTI."""
    from SegNetsLib.app.selftest import load_case
    from SegNetsLib.imageio.volumes import write_volume

    data = tmp_path / "data"
    series = write_series(ct_crop(data_dir / "ts_ct_sm" / "image.nii.gz"), data)
    write_volume(load_case(data_dir)[0], data / "crop.nii.gz")
    (data / "notes.nii.gz").write_bytes(b"written by hand, not an image")
    return data, series


def test_a_folder_of_several_volumes_offers_each_by_its_listed_name(folder, tmp_path, data_dir):
    from SegNetsLib.web.datafolder import DataVolumes

    data, series = folder
    volumes = DataVolumes(data)
    assert volumes.paths == [series[0], data / "crop.nii.gz", data / "notes.nii.gz"]
    titles = [choice.title for choice in volumes.choices]
    assert titles[0].startswith("CT_abdomen_3_") and titles[1:] == ["crop.nii.gz", "notes.nii.gz"], titles
    assert [choice.value for choice in volumes.choices] == ["0", "1", "2"]
    assert volumes.path("1") == (data / "crop.nii.gz", "crop.nii.gz")
    for value in ("3", "-1", "../crop.nii.gz", None):
        with pytest.raises(SegNetsError) as refused:
            volumes.path(value)
        assert one_sentence(refused.value).startswith(f"volume choice {value!r} is not one of the 3 volumes"), value
    (data / "crop.nii.gz").unlink()
    with pytest.raises(SegNetsError) as refused:
        volumes.path("1")
    assert one_sentence(refused.value) == (
        "'crop.nii.gz' is no longer where --data found it; it was moved or deleted on the server."
    )
    assert DataVolumes(series[3]).choices == [] and DataVolumes(None).paths == []  # a file (its series); no --data
    single = tmp_path / "single"
    single.mkdir()
    (single / "ct.nii.gz").write_bytes((data_dir / "ts_ct_sm" / "image.nii.gz").read_bytes())
    assert DataVolumes(single).paths == [single / "ct.nii.gz"] and DataVolumes(single).choices == []
    lone = DataVolumes(single / "ct.nii.gz")  # deleted before the first browser connects: a message, no traceback
    (single / "ct.nii.gz").unlink()
    with pytest.raises(SegNetsError, match="^'ct.nii.gz' is no longer where --data found it; it was moved or deleted"):
        lone.path("0")


@pytest.fixture
def web_app(folder, tmp_path, monkeypatch):
    """A SegNetsWebApp (not serving) started with ``--data`` the folder, a tiny liver model in its library."""
    pytest.importorskip("trame_slicer")
    from trame.app import get_server

    from SegNetsLib.app.selftest import add_tiny_model
    from SegNetsLib.web.app import SegNetsWebApp

    monkeypatch.setenv("SEGNETS_MODELS", str(tmp_path / "models"))
    add_tiny_model(ModelLibrary(tmp_path / "models"), "tiny")
    app = SegNetsWebApp(get_server(f"segnets-datavol-{tmp_path.name}", client_type="vue3"), data=folder[0])
    yield app
    app.actions.logic.worker.shutdown(wait=False)


def _paint_square(actions, k: int) -> None:
    """Paint a 10 x 10 voxel square of label 1 on axial slice ``k`` of the volume shown, as the Segment Editor would."""
    from SegNetsLib.mrml import segmentation_from_labelmap, volume_from_node

    volume = volume_from_node(actions.volume_node)
    painted = np.zeros(volume.shape_kji, np.uint8)
    painted[k, 10:20, 10:20] = 1
    labels = actions._card(actions.data.model_key).labels
    segmentation_from_labelmap(
        actions.scene, volume.with_array(painted), labels, actions.volume_node, "Annotation",
        segmentation_node=actions.annotation_node,
    )  # fmt: skip


def _dimensions(node) -> tuple[int, int, int]:
    return node.GetImageData().GetDimensions()


def test_choosing_a_volume_replaces_the_one_shown_as_an_upload_does(web_app, data_dir):
    app, actions = web_app, web_app.actions
    data = actions.data

    async def scenario() -> None:
        assert [choice.title for choice in data.data_volumes][1:] == ["crop.nii.gz", "notes.nii.gz"]
        app._on_client_connected()  # the first browser: --data's first volume, the series
        assert data.volume_name.startswith("CT_abdomen_3_") and data.data_volume == "0", data.error
        _paint_square(actions, 5)
        assert actions.annotated_slice_count() == 1
        series_node = actions.volume_node

        app.choose_data_volume("1")  # the crop, on another grid: the painting goes with the series
        assert data.error == "" and data.data_volume == "1"
        assert data.volume_name == "crop" and _dimensions(actions.volume_node) == (64, 64, 30)
        assert actions.scene.GetNodeByID(series_node.GetID()) is not series_node
        assert actions.annotated_slice_count() == 0 and not data.has_result
        assert data.message.endswith(f"The painting of '{series_node.GetName()}' (1 slice) was discarded with it.")
        labels, _ = actions.annotation_labels()
        assert labels.shape_kji == (30, 64, 64) and not labels.array.any()

        volume, nodes = actions.volume_node, actions.scene.GetNumberOfNodes()
        for value, start in (("2", "'notes.nii.gz' is not a NIfTI (gzip) volume"), ("7", "volume choice '7'")):
            app.choose_data_volume(value)  # unusable: one sentence, nothing changes, the selector stays
            assert data.error.startswith(start) and data.error.endswith(".") and "\n" not in data.error, data.error
            assert actions.volume_node is volume and actions.scene.GetNumberOfNodes() == nodes
            assert data.data_volume == "1" and data.volume_name == "crop"

        actions.segment()  # while it runs (until its result is shown) a choice is refused like an upload
        assert data.busy
        app.choose_data_volume("0")
        assert "working on the current volume" in data.error and data.data_volume == "1"
        while data.busy:
            await asyncio.sleep(0.05)
        assert actions.volume_node is volume and data.has_result

        image = data_dir / "ts_ct_sm" / "image.nii.gz"
        await app._on_upload([{"name": "upload.nii.gz", "content": image.read_bytes()}])
        assert data.volume_name == "upload" and data.data_volume is None  # no data volume is shown
        app.choose_data_volume("0")
        assert data.volume_name.startswith("CT_abdomen_3_") and _dimensions(actions.volume_node) == (32, 32, 16)
        assert data.data_volume == "0" and not data.has_result and data.error == ""

    asyncio.run(scenario())
