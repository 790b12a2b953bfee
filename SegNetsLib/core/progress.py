"""Progress reporting and cancellation shared by every long operation."""

from __future__ import annotations

import threading
from collections.abc import Callable

from SegNetsLib.core.errors import Cancelled


def no_progress(fraction: float, stage: str) -> None:
    """A progress callback that ignores every report."""


class CancelToken:
    """A thread-safe flag a caller sets to stop a long operation.

    Long operations call :meth:`raise_if_cancelled` between steps; on cancel they raise
    :class:`Cancelled` before writing any output.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("the operation was cancelled")


ProgressFn = Callable[[float, str], None]  # called with a fraction in [0, 1] and a short stage name ("RoI 2/3")
