"""Errors of the microexp core: every one names the file (or field) and, where it applies, the byte offset."""

from __future__ import annotations

import os
from typing import Optional


class MicroexpError(Exception):
    """Base class of the errors that microexp reports to users as one line."""


class FormatError(MicroexpError):
    """Input whose bytes do not follow the format they claim.

    The message reads ``PATH: at byte OFFSET: REASON`` so that users can find the spot.
    """

    def __init__(self, path: Optional[os.PathLike | str], reason: str, offset: Optional[int] = None):
        self.path = None if path is None else os.fspath(path)
        self.offset = offset
        self.reason = reason
        where = self.path if self.path is not None else "<payload>"
        at = f" at byte {offset}:" if offset is not None else ""
        super().__init__(f"{where}:{at} {reason}")


class ParameterError(MicroexpError):
    """A parameter or argument with a value that cannot work; the message names the parameter."""
