"""Errors a user can cause, each reported as one sentence naming the input and the problem."""


class SegNetsError(ValueError):
    """A problem with user input (a file, a model, an annotation, an option).

    The message is one sentence that names the input and says what is wrong with it.
    """


class NotWritten(SegNetsError):
    """A file or folder could not be written (a full disk, a file size limit, a folder gone); nothing was left
    at ``path``. ``strerror`` is the short reason ("No space left on device")."""

    def __init__(self, path: object, strerror: str) -> None:
        super().__init__(f"{path}: could not be written ({strerror.rstrip('.')}); nothing was left there.")
        self.path, self.strerror = path, strerror


class Cancelled(Exception):
    """Raised inside a long operation when its cancel token is set; nothing was written."""


class ReportedByMainRank(SegNetsError):
    """Under torchrun, a problem that rank 0 reports for the whole run: the other ranks stop with it but do not
    repeat it, so the user reads one sentence rather than one per process."""
