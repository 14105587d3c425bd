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


def input_file(path: os.PathLike | str, what: str = "input") -> str:
    """``path`` as a string when it names a regular file; else a :class:`FormatError` that says what it is.

    Every command and node that opens a file asks this first: a FIFO, socket or device would block ``open``
    (or never end), so it is refused before anything is opened or created."""
    import stat

    p = os.fspath(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise FormatError(p, f"no such {what} file") from None
    except OSError as exc:
        raise FormatError(p, f"cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise FormatError(p, f"is a folder, not a{'n' if what[:1] in 'aeiou' else ''} {what} file")
    if not stat.S_ISREG(mode):
        kind = "FIFO (named pipe)" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
        raise FormatError(p, f"is a {kind}, not a regular file: refused ({what} files are read from disk)")
    return p
