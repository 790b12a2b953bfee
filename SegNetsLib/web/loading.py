"""Getting a volume into the web app's scene: from the browser's upload or from a server-side path.

An upload is one volume file or the files of one DICOM series (several files, or a folder). A file is checked
with :func:`SegNetsLib.imageio.volumes.read_volume` before anything in the scene changes,
so an unreadable upload leaves the server as it was; only then is the scene cleared and the file
loaded with Slicer's own volume reader (as desktop Slicer would load it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.imageio.dicom import has_dicom_mark, series_in
from SegNetsLib.imageio.volumes import (
    VOLUME_SUFFIXES,
    input_name,
    is_dicom_input,
    is_segmentation_file,
    is_volume_file,
    listed_volumes,
    read_volume,
    volume_stem,
)
from SegNetsLib.mrml.files import load_volume_node

MAX_UPLOAD_BYTES = 8 * 1024**3  # far beyond any CT or MR series; a larger upload is refused unread
_HEAD_BYTES = 352  # enough for every signature below (a NIfTI-1 header is 348 bytes) and the DICOM mark
_FORMATS = {
    "NIfTI (gzip)": (".nii.gz",),
    "NIfTI": (".nii",),
    "NRRD": (".nrrd",),
    "MetaImage": (".mha",),
    "detached": (".nhdr", ".mhd"),
}


def _nifti(head: bytes) -> bool:
    return len(head) >= 4 and (
        int.from_bytes(head[:4], "little") in (348, 540) or int.from_bytes(head[:4], "big") in (348, 540)
    )


def _metaimage(head: bytes) -> bool:
    first = head.split(b"\n", 1)[0]
    return b"=" in first and all(32 <= byte < 127 or byte in (9, 13) for byte in first)


_SIGNATURES = {
    "NIfTI (gzip)": lambda head: head[:2] == b"\x1f\x8b",
    "NIfTI": _nifti,
    "NRRD": lambda head: head[:7] == b"NRRD000",
    "MetaImage": _metaimage,
}


def volume_files_in(path: Path) -> list[Path]:
    """The volumes a ``--data`` argument names: the file itself (a DICOM file: its series), or a folder's volume
    files and one file per DICOM series (:func:`~SegNetsLib.imageio.volumes.listed_volumes`, sorted)."""
    path = Path(path)
    if path.is_dir():
        files = listed_volumes(path)
        if not files:
            raise SegNetsError(
                f"--data folder {str(path)!r} holds no volume file ({', '.join(VOLUME_SUFFIXES)}) and no DICOM series."
            )
        return files
    if path.is_file():
        if not is_dicom_input(path):  # refused at start, as a missing one is, not only once a browser connects
            check_file_head(path, input_name(path))
        return [path]
    raise SegNetsError(f"--data {str(path)!r} is neither a file nor a folder.")


def check_signature(head: bytes, shown_name: str) -> None:
    """Refuse, from its first bytes, a file whose content is not the volume format its name says (an HTML
    page, a zip or a file of zeros renamed ``.nii``), before the rest of it is written or read."""
    lower = shown_name.lower()
    if is_segmentation_file(lower):  # a labelmap NRRD: it would replace the image, painting and result
        raise SegNetsError(
            f"{shown_name!r} is a segmentation, not an image: open the image (CT, MR) to segment; SegNets Web "
            "loads no segmentation file."
        )
    kind = next((k for k, suffixes in _FORMATS.items() if lower.endswith(suffixes)), None)
    if kind is None:
        raise SegNetsError(
            f"{shown_name!r} is not a volume file SegNets reads (use one of {', '.join(VOLUME_SUFFIXES)})."
        )
    if kind == "detached":
        raise SegNetsError(
            f"{shown_name!r} is a header whose voxels are in another file; upload a single-file volume "
            "(.nii, .nii.gz, .nrrd or .mha)."
        )
    if not head:
        raise SegNetsError(f"{shown_name!r} is empty (0 bytes); upload the {kind} volume itself.")
    if not _SIGNATURES[kind](head):
        shown = head[:12].decode("ascii", "replace").encode("unicode_escape").decode("ascii")
        raise SegNetsError(
            f"{shown_name!r} is not a {kind} volume: it starts with {shown!r} instead of a {kind} header."
        )


def check_file_head(path: Path, shown_name: str) -> None:
    """Refuse a file that is not a single-file volume by its name (a segmentation, a detached header, another
    suffix) or by its first bytes (:func:`check_signature`), without reading the rest of it."""
    if not is_volume_file(shown_name):
        raise SegNetsError(
            f"{shown_name!r} is not a volume file SegNets reads (use one of {', '.join(VOLUME_SUFFIXES)})."
        )
    with open(path, "rb") as handle:
        check_signature(handle.read(_HEAD_BYTES), shown_name)


def check_volume_file(path: Path, shown_name: str) -> None:
    """Raise SegNetsError with a one-sentence reason when ``path`` is not a usable single-channel 3D volume (a DICOM
    file: its series)."""
    dicom = is_dicom_input(path)
    if not dicom:
        check_file_head(path, shown_name)
    try:
        volume = read_volume(path)
    except SegNetsError as error:  # a series is named by its folder: an upload's is a temporary one
        reason = str(error).replace(f"{path}: ", "")
        reason = (reason.replace(f"{path.parent}: ", "") if dicom else reason).replace(str(path), shown_name)
        raise SegNetsError(f"{shown_name!r} cannot be used: {reason}") from error
    if volume.array.ndim == 4:  # Slicer's views and the segment editor take one value per voxel
        raise SegNetsError(
            f"{shown_name!r} holds {volume.array.shape[0]} channels; SegNets Web shows single-channel volumes "
            "(segnets segment takes several)."
        )


def _base_name(upload: dict) -> str:
    """The file name an upload dict gives, without any folder (a client path is never trusted)."""
    return Path(str(upload.get("name") or "upload").replace("\\", "/")).name


def _chunks(upload: dict) -> list:
    content = upload.get("content") or b""
    return content if isinstance(content, list) else [content]  # trame sends large files in chunks


def _head(chunks: list) -> bytes:
    """The first :data:`_HEAD_BYTES` of a file sent as ``chunks``, whatever the chunks' sizes."""
    head = bytearray()
    for chunk in chunks:
        head += bytes(chunk[: _HEAD_BYTES - len(head)])
        if len(head) >= _HEAD_BYTES:
            break
    return bytes(head)


def _write(chunks: list, path: Path) -> None:
    with open(path, "wb") as handle:  # chunk by chunk: never the whole upload joined in memory
        for chunk in chunks:
            handle.write(chunk)


class VolumeLoader:
    """Loads one volume into a trame-slicer ``SlicerApp`` scene and shows it in every view."""

    def __init__(self, slicer_app) -> None:
        self._slicer_app = slicer_app

    def load_uploaded(self, files: list[dict]) -> object:
        """Load an upload (trame upload dicts): one volume file, or the files of one DICOM series (other files that
        are not volume files are ignored); return the volume node.

        Raises SegNetsError (scene unchanged) when the upload is empty, holds several series or volumes, or is not
        a readable volume.
        """
        if not files:
            raise SegNetsError("the upload held no file.")
        names = [_base_name(upload) for upload in files]
        chunks = [_chunks(upload) for upload in files]
        size = sum(len(chunk) for pieces in chunks for chunk in pieces)
        if size > MAX_UPLOAD_BYTES:
            shown = repr(names[0]) if len(files) == 1 else f"the upload of {len(files)} files"
            raise SegNetsError(
                f"{shown} is {size / 1024**3:.1f} GiB, more than the {MAX_UPLOAD_BYTES // 1024**3} GiB "
                "SegNets Web loads; it is refused."
            )
        heads = [_head(pieces) for pieces in chunks]
        dicom = [i for i, head in enumerate(heads) if has_dicom_mark(head)]
        if not dicom:
            volumes = [i for i, name in enumerate(names) if is_volume_file(name)] if len(files) > 1 else [0]
            if len(volumes) > 1:
                raise SegNetsError(
                    f"the upload holds {len(volumes)} volume files ({', '.join(names[i] for i in volumes)}); "
                    "upload one at a time."
                )
            first = volumes[0] if volumes else 0
            check_signature(heads[first], names[first])
            with tempfile.TemporaryDirectory(prefix="segnets-upload-") as folder:
                path = Path(folder) / names[first]
                _write(chunks[first], path)
                return self.load_path(path, names[first])
        return self._load_uploaded_series([(names[i], chunks[i]) for i in dicom], names)

    def _load_uploaded_series(self, dicom: list[tuple[str, list]], names: list[str]) -> object:
        """Write the DICOM files of an upload into one temporary folder and load the one series they hold."""
        volumes = [name for name in names if is_volume_file(name)]
        if volumes:
            raise SegNetsError(
                f"the upload mixes DICOM files with the volume file {volumes[0]!r}; upload either the files of one "
                "DICOM series or one volume file."
            )
        seen: set[str] = set()
        for name, _ in dicom:
            if name in seen:
                raise SegNetsError(f"the upload holds two files named {name!r}; upload the files of one series.")
            if name.startswith("."):
                raise SegNetsError(f"{name!r} is a hidden file name (it starts with '.'); rename it and upload again.")
            seen.add(name)
        with tempfile.TemporaryDirectory(prefix="segnets-upload-") as folder:
            for name, pieces in dicom:
                try:
                    _write(pieces, Path(folder) / name)
                except (OSError, ValueError) as error:
                    raise SegNetsError(f"the uploaded file {name!r} could not be stored ({error}).") from None
            found = series_in(folder)
            if len(found) != 1:
                some = (
                    "no DICOM image" if not found else f"{len(found)} DICOM series ({', '.join(s.stem for s in found)})"
                )
                raise SegNetsError(f"the upload holds {some}; upload the files of one series.")
            return self.load_path(found[0].files[0], found[0].stem)

    def load_path(self, path: Path, shown_name: str | None = None) -> object:
        """Check, then load ``path`` (a DICOM file: its series) into a cleared scene and show it; return the volume
        node."""
        shown_name = shown_name or input_name(path)
        check_volume_file(Path(path), shown_name)
        scene = self._slicer_app.scene
        scene.Clear()
        node = load_volume_node(self._slicer_app.volumes_logic, path, volume_stem(shown_name) or shown_name)
        self._slicer_app.display_manager.show_volume(node, do_reset_views=True)
        return node
