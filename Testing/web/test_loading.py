"""SegNets Web uploads that are not volumes: a clear message, the scene as it was, bounded memory."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fuzz_helpers import one_sentence, run_limited
from robustness_cases import expect

from SegNetsLib.core.errors import SegNetsError

TWO_GB = 2 * 1024**3


@pytest.fixture(scope="module")
def loaded(data_dir):
    """A SlicerApp scene with a CT loaded through an upload, as the browser does."""
    pytest.importorskip("trame_slicer")
    from trame_slicer.core import SlicerApp

    from SegNetsLib.web.loading import VolumeLoader

    loader = VolumeLoader(SlicerApp())
    image = data_dir / "ts_ct_sm" / "image.nii.gz"
    node = loader.load_uploaded([{"name": "ct.nii.gz", "content": image.read_bytes()}])
    return loader, node


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("card.json", "{}")
    return buffer.getvalue()


HTML = b"<!DOCTYPE html><html><body>Not a scan</body></html>"


@pytest.mark.parametrize(
    ("name", "content", "case"),
    [
        ("page.html", HTML, "upload-not-volume-name"),
        ("ct.nii.gz", HTML, "upload-wrong-content"),
        ("ct.nii", HTML, "upload-wrong-content"),
        ("model.zip", _zip_bytes(), "upload-not-volume-name"),
        ("ct.nrrd", _zip_bytes(), "upload-wrong-content"),
        ("ct.mha", b"\x00" * 4096, "upload-wrong-content"),
        ("ct.mhd", b"ObjectType = Image\n", "upload-detached"),
        ("empty.nrrd", b"", "upload-wrong-content"),
    ],
)
def test_an_upload_that_is_not_a_volume_gets_one_sentence_and_the_scene_stays(loaded, name, content, case):
    loader, node = loaded
    scene = node.GetScene()
    before = scene.GetNumberOfNodes()
    with pytest.raises(SegNetsError) as refused:
        loader.load_uploaded([{"name": name, "content": [content[:10], content[10:]]}])  # in chunks, as trame sends
    message = one_sentence(refused.value)
    assert message.startswith(repr(name)), message
    expect(case, message)
    assert scene.GetNumberOfNodes() == before and scene.GetNodeByID(node.GetID()) is node


@pytest.mark.parametrize("name", ["brain.nii.gz", "brain.nrrd"])
def test_an_upload_of_several_channels_is_refused_and_the_scene_stays(loaded, data_dir, tmp_path, name):
    import SimpleITK as sitk

    loader, node = loaded
    scene = node.GetScene()
    before = scene.GetNumberOfNodes()
    ct = sitk.ReadImage(str(data_dir / "ts_ct_sm" / "image.nii.gz"), sitk.sitkFloat32)
    two = [ct, sitk.InvertIntensity(ct, 2000.0)]
    sitk.WriteImage(sitk.JoinSeries(two) if name.endswith(".nii.gz") else sitk.Compose(two), str(tmp_path / name))
    with pytest.raises(SegNetsError) as refused:
        loader.load_uploaded([{"name": name, "content": (tmp_path / name).read_bytes()}])
    message = one_sentence(refused.value)
    assert message.startswith(f"{name!r} holds 2 channels"), message
    expect("upload-channels", message)
    assert scene.GetNumberOfNodes() == before and scene.GetNodeByID(node.GetID()) is node


def test_a_2_gb_upload_of_zeros_is_refused_in_bounded_memory(tmp_path):
    """2 GB of zeros (a sparse file, sent as 1 MiB chunks that view it) named .nii, in a process whose address
    space allows 512 MiB more than it has mapped once set up: refused from its first bytes, nothing joined
    or written."""
    zeros = tmp_path / "zeros.nii"
    with open(zeros, "wb") as handle:
        handle.truncate(TWO_GB)
    result = run_limited(
        f"""
        import mmap, resource, tempfile
        from pathlib import Path
        from trame_slicer.core import SlicerApp
        from SegNetsLib.core.errors import SegNetsError
        from SegNetsLib.web.loading import VolumeLoader
        loader = VolumeLoader(SlicerApp())
        handle = open({str(zeros)!r}, "rb")
        view = memoryview(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
        chunks = [view[i : i + 2**20] for i in range(0, len(view), 2**20)]
        mapped = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (mapped + 512 * 2**20, resource.RLIM_INFINITY))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            loader.load_uploaded([{{"name": "zeros.nii", "size": len(view), "content": chunks}}])
        except SegNetsError as error:
            print("REFUSED", error)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print("GROWN_KIB", grown)
        print("LEFT", sorted(p.name for p in Path(tempfile.gettempdir()).glob("segnets-upload-*")))
        """
    )
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert "REFUSED" in lines, result.stdout + result.stderr[-3000:]
    expect("upload-wrong-content", lines["REFUSED"])
    assert int(lines["GROWN_KIB"]) < 64 * 1024  # under 64 MiB more
    assert lines["LEFT"] == "[]"


def test_a_2_gb_data_file_of_zeros_is_refused_from_its_first_bytes(loaded, tmp_path):
    loader, node = loaded
    zeros = tmp_path / "zeros.nrrd"
    with open(zeros, "wb") as handle:
        handle.truncate(TWO_GB)
    with pytest.raises(SegNetsError) as refused:
        loader.load_path(zeros)
    expect("upload-wrong-content", one_sentence(refused.value))
    assert node.GetScene().GetNodeByID(node.GetID()) is node


def test_a_segmentation_upload_is_refused_and_the_scene_stays(loaded, data_dir, tmp_path):
    """A .seg.nrrd (an annotation made in 3D Slicer, or the page's own download) was loaded as the volume: the CT,
    the painting and the result were replaced by a grey labelmap named 'liver.seg'."""
    from SegNetsLib.app.selftest import LIVER
    from SegNetsLib.core.volume import Volume
    from SegNetsLib.imageio.segmentations import write_segmentation
    from SegNetsLib.web.loading import volume_files_in

    loader, node = loaded
    scene = node.GetScene()
    before = scene.GetNumberOfNodes()
    labels = Volume(np.zeros((4, 5, 6), np.uint8))
    labels.array[1, 2:4, 2:5] = 1
    path = write_segmentation(labels, [LIVER], tmp_path / "liver.seg.nrrd")
    with pytest.raises(SegNetsError) as refused:
        loader.load_uploaded([{"name": "liver.seg.nrrd", "content": Path(path).read_bytes()}])
    message = one_sentence(refused.value)
    assert message.startswith("'liver.seg.nrrd' is a segmentation"), message
    expect("upload-segmentation", message)
    assert scene.GetNumberOfNodes() == before and scene.GetNodeByID(node.GetID()) is node
    (tmp_path / "ct.nii.gz").write_bytes((data_dir / "ts_ct_sm" / "image.nii.gz").read_bytes())
    assert volume_files_in(tmp_path) == [tmp_path / "ct.nii.gz"]  # the folder's .seg.nrrd sorts first


def test_a_data_folder_lists_no_hidden_file(data_dir, tmp_path):
    """The temporary file of a write cut short sorts first: it would be the volume shown at start."""
    from SegNetsLib.web.loading import volume_files_in

    image = (data_dir / "ts_mr_sm" / "image.nii.gz").read_bytes()
    (tmp_path / "mr.nii.gz").write_bytes(image)
    (tmp_path / ".mr.nrrd.k2j4d8aa.partial.nrrd").write_bytes(image[:5000])
    assert volume_files_in(tmp_path) == [tmp_path / "mr.nii.gz"]
    (tmp_path / "mr.nii.gz").unlink()
    with pytest.raises(SegNetsError, match="holds no volume file"):
        volume_files_in(tmp_path)


def test_a_data_volume_fills_the_views_once_the_browser_sizes_them(tmp_path, data_dir):
    """``--data`` is loaded when a browser connects, while its views are still 300 x 300 pixels: once the page
    sized the axial view 503 x 914, it showed the middle 105 mm of the CT's 192 mm width (and no way to paint the
    rest) until the user reset the view."""
    pytest.importorskip("trame_slicer")
    import numpy as np
    from trame.app import get_server
    from vtkmodules.vtkCommonCore import vtkCommand

    from SegNetsLib.web.app import SegNetsWebApp

    ct = data_dir / "ts_ct_sm" / "image.nii.gz"
    app = SegNetsWebApp(get_server(f"segnets-fit-{tmp_path.name}", client_type="vue3"), data=ct)
    app._on_client_connected()
    volume = app.actions.volume_node
    bounds = np.zeros(6)
    volume.GetRASBounds(bounds)
    extent = bounds[1::2] - bounds[::2]  # R, A, S in mm
    for view in app.slicer_app.view_manager.get_slice_views():  # the browser sends each view's size
        view.interactor().UpdateSize(503, 914)
        view.interactor().InvokeEvent(vtkCommand.WindowResizeEvent)
    axial = app.slicer_app.scene.GetSingletonNode(
        app.slicer_app.view_manager.get_slice_views()[0].get_singleton_tag(), "vtkMRMLSliceNode"
    )
    assert axial.GetOrientation() == "Axial" and list(axial.GetDimensions())[:2] == [503, 914]
    width, height, _ = axial.GetFieldOfView()
    assert width >= extent[0] - 1e-3 and height >= extent[1] - 1e-3, (width, height, extent)
    app.actions.logic.worker.shutdown(wait=False)


@pytest.mark.parametrize("name", ["liver.seg.nrrd", "notes.txt", "html.nii.gz"])
def test_a_data_file_that_is_no_volume_stops_segnets_web_at_start(data_dir, tmp_path, name):
    """``segnets web --data`` refuses what the page would refuse (a segmentation, another file type, content that is
    not its format) at start, in one line with exit 1, as it refuses a missing file: not by serving a page that
    shows the refusal only once a browser connects."""
    import subprocess
    import sys

    pytest.importorskip("trame_slicer")
    source = {"liver.seg.nrrd": data_dir / "ts_ct_sm" / "image.nii.gz"}.get(name)
    path = tmp_path / name
    path.write_bytes(source.read_bytes() if source else b"<html><body>not a volume</body></html>")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "SegNetsLib.cli", "web", "--port", "0", "--data", str(path)],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"segnets web served --data {name} instead of refusing it")
    assert result.returncode == 1 and "serving on" not in result.stdout, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("segnets web: error: ")]
    assert len(errors) == 1 and f"'{name}'" in errors[0], result.stderr
