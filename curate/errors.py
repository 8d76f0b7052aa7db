"""Errors meant for users.

A `CurateError` carries a message written for the person at the terminal: what was expected, what
was found, and how to fix it. The CLI prints it as one line on stderr and exits with code 1; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class CurateError(Exception):
    """A user-facing error: the message is shown as is, without a traceback."""


class InputError(CurateError):
    """A file or record given by the user cannot be used."""


class ConfigError(CurateError):
    """A recipe, config or option is invalid."""


class SchemaError(CurateError):
    """A table does not match the schema a step expects."""


class LockedError(CurateError):
    """Another process holds the lock on an output."""


class NotFoundError(CurateError):
    """A named manifest, mixture, run or report does not exist."""
