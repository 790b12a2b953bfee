"""The volumes ``segnets web --data`` names, as the page's volume selector offers them.

``--data FOLDER`` holding several volumes (volume files and DICOM series, as
:func:`SegNetsLib.imageio.volumes.listed_volumes` lists them) gives one choice per volume, named as listed (a file's
name, a series' name); the page sends back a choice's value (its place in the list, never a server path), which
:meth:`DataVolumes.path` turns into the file to load. A ``--data`` file, or a folder with one volume, offers no choice.
"""

from __future__ import annotations

from pathlib import Path

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.imageio.volumes import input_name
from SegNetsLib.web.loading import volume_files_in
from SegNetsLib.web.state import Choice


class DataVolumes:
    """The volumes of ``--data`` (None: no ``--data``), listed once when the server starts."""

    def __init__(self, data: Path | None) -> None:
        self.paths: list[Path] = volume_files_in(data) if data else []
        self.names: list[str] = [input_name(path) for path in self.paths]

    @property
    def choices(self) -> list[Choice]:
        """The selector's entries (title: the volume's name, value: its index), empty for fewer than two volumes."""
        if len(self.paths) < 2:
            return []
        return [Choice(title=name, value=str(index)) for index, name in enumerate(self.names)]

    def path(self, value: object) -> tuple[Path, str]:
        """The file of the choice ``value`` ("0" the first volume, also of a lone one) and the name it is listed
        under; raises SegNetsError for a value that is no choice, or a volume no longer where it was listed."""
        index = int(value) if isinstance(value, (int, str)) and str(value).isdigit() else -1
        if not 0 <= index < len(self.paths):
            raise SegNetsError(f"volume choice {value!r} is not one of the {len(self.paths)} volumes of --data.")
        path, name = self.paths[index], self.names[index]
        if not path.is_file():  # the folder is listed once, when the server starts
            raise SegNetsError(f"{name!r} is no longer where --data found it; it was moved or deleted on the server.")
        return path, name
