"""Errors ecgdigit raises on purpose: each message names the file or value and the problem.

The CLI turns them into a one-line message and an exit code (see `ecgdigit --help`).
"""


class EcgdigitError(Exception):
    """Base class of the errors users are meant to read."""

    exit_code = 1


class InputError(EcgdigitError):
    """A file or folder given by the user is missing, unreadable or not what it should be."""

    exit_code = 2


class SubmissionError(EcgdigitError):
    """A submission or solution table does not have the rows and values the competition expects."""

    exit_code = 3
