"""Errors a user can cause, each reported as one sentence naming the input and the problem."""


class SegNetsError(ValueError):
    """A problem with user input (a file, a model, an annotation, an option).

    The message is one sentence that names the input and says what is wrong with it.
    """


class Cancelled(Exception):
    """Raised inside a long operation when its cancel token is set; nothing was written."""
