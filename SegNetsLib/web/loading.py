"""Getting a volume into the web app's scene: from the browser's upload or from a server-side path.

A file is checked with :func:`SegNetsLib.imageio.volumes.read_volume` before anything in the scene changes,
so an unreadable upload leaves the server as it was; only then is the scene cleared and the file
loaded with Slicer's own volume reader (as desktop Slicer would load it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.imageio.volumes import (
    VOLUME_SUFFIXES,
    is_segmentation_file,
    is_volume_file,
    listed_volume_files,
    read_volume,
    volume_stem,
)
from SegNetsLib.mrml.files import load_volume_node

MAX_UPLOAD_BYTES = 8 * 1024**3  # far beyond any CT or MR series; a larger upload is refused unread
_HEAD_BYTES = 352  # enough for every signature below (a NIfTI-1 header is 348 bytes)
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
    """The volume files a ``--data`` argument names: the file itself, or a folder's volume files (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = listed_volume_files(path)
        if not files:
            raise SegNetsError(f"--data folder {str(path)!r} holds no volume file ({', '.join(VOLUME_SUFFIXES)}).")
        return files
    if path.is_file():
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


def check_volume_file(path: Path, shown_name: str) -> None:
    """Raise SegNetsError with a one-sentence reason when ``path`` is not a usable single-channel 3D volume."""
    if not is_volume_file(shown_name):
        raise SegNetsError(
            f"{shown_name!r} is not a volume file SegNets reads (use one of {', '.join(VOLUME_SUFFIXES)})."
        )
    with open(path, "rb") as handle:
        check_signature(handle.read(_HEAD_BYTES), shown_name)
    try:
        volume = read_volume(path)
    except SegNetsError as error:
        reason = str(error).replace(f"{path}: ", "").replace(str(path), shown_name)
        raise SegNetsError(f"{shown_name!r} cannot be used: {reason}") from error
    if volume.array.ndim == 4:  # Slicer's views and the segment editor take one value per voxel
        raise SegNetsError(
            f"{shown_name!r} holds {volume.array.shape[0]} channels; SegNets Web shows single-channel volumes "
            "(segnets segment takes several)."
        )


class VolumeLoader:
    """Loads one volume into a trame-slicer ``SlicerApp`` scene and shows it in every view."""

    def __init__(self, slicer_app) -> None:
        self._slicer_app = slicer_app

    def load_uploaded(self, files: list[dict]) -> object:
        """Load the first uploaded file (trame upload dicts); return the volume node.

        Raises SegNetsError (scene unchanged) when the upload is empty or not a readable volume.
        """
        if not files:
            raise SegNetsError("the upload held no file.")
        upload = files[0]
        shown_name = Path(str(upload.get("name") or "upload")).name  # never trust a client path
        content = upload.get("content") or b""
        chunks = content if isinstance(content, list) else [content]  # trame sends large files in chunks
        size = sum(len(chunk) for chunk in chunks)
        if size > MAX_UPLOAD_BYTES:
            raise SegNetsError(
                f"{shown_name!r} is {size / 1024**3:.1f} GiB, more than the {MAX_UPLOAD_BYTES // 1024**3} GiB "
                "SegNets Web loads; it is refused."
            )
        check_signature(bytes(chunks[0][:_HEAD_BYTES]) if chunks else b"", shown_name)
        with tempfile.TemporaryDirectory(prefix="segnets-upload-") as folder:
            path = Path(folder) / shown_name
            with open(path, "wb") as handle:  # chunk by chunk: never the whole upload joined in memory
                for chunk in chunks:
                    handle.write(chunk)
            return self.load_path(path, shown_name)

    def load_path(self, path: Path, shown_name: str | None = None) -> object:
        """Check, then load ``path`` into a cleared scene and show it; return the volume node."""
        shown_name = shown_name or Path(path).name
        check_volume_file(Path(path), shown_name)
        scene = self._slicer_app.scene
        scene.Clear()
        node = load_volume_node(self._slicer_app.volumes_logic, path, volume_stem(shown_name) or shown_name)
        self._slicer_app.display_manager.show_volume(node, do_reset_views=True)
        return node
