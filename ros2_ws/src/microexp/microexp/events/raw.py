"""Prophesee RAW files (EVT 3.0 and EVT 2.0): header, whole-file and chunked readers, raw payload access.

A RAW file is an ASCII header of lines that start with ``"% "`` (``% evt 3.0``, ``% format EVT3;height=720;
width=1280``, ``% geometry 1280x720``, ``% plugin_name hal_plugin_imx636_evk4``, ``% serial_number ...``),
then the little-endian binary words. The header ends after a ``% end`` line (newer files) or at the first line
that does not start with ``"% "``. A ``"% "`` line that is not clean text (control bytes, invalid UTF-8) is taken
as the start of the binary data, since a binary word can begin with the bytes ``%`` and space.

Sensor size, first match wins:

1. ``% geometry WxH``;
2. ``width=``/``height=`` options of the ``% format`` line;
3. the plugin name (``% plugin_name``, else ``% sensor_name``), by the first of these substrings it contains:

   ===========  =========  ===========================================
   substring    size       sensor
   ===========  =========  ===========================================
   ``imx636``   1280x720   Sony IMX636 (EVK4 HD)
   ``genx320``  320x320    Prophesee GenX320
   ``gen41``    1280x720   Prophesee Gen4.1 HD (EVK3 HD)
   ``gen4``     1280x720   Prophesee Gen4 HD
   ``evk4``     1280x720   EVK4 (IMX636)
   ``gen31``    640x480    Prophesee Gen3.1 VGA
   ``gen3``     640x480    Prophesee Gen3.0 VGA
   ===========  =========  ===========================================

4. the caller's ``width``/``height``;
5. otherwise :func:`read_raw` and :func:`iter_raw` raise :class:`~microexp.errors.FormatError`
   (:func:`read_raw_header` leaves the size as None).

Errors: every malformed input raises ``FormatError(path, reason, offset)``: empty file, no ``"% "`` header,
a header cut off before its end, no or an unknown event format, a size that cannot be found, and, with
``strict=True`` (the default), reserved word types (which is how random bytes show up). A trailing partial
word (a file cut mid-word, a stray byte appended) is not an error: its bytes are dropped and one warning
naming the file and offset goes to the ``microexp`` logger (stderr by default).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np

from microexp.errors import FormatError, ParameterError
from microexp.events.evt2 import Evt2Decoder
from microexp.events.evt3 import Evt3Decoder

FORMATS = {"evt3": (Evt3Decoder, "<u2", 2), "evt2": (Evt2Decoder, "<u4", 4)}
"""format name -> (decoder class, word dtype, bytes per word)."""

_EVT_VERSIONS = {"3.0": "evt3", "3": "evt3", "2.0": "evt2", "2": "evt2"}
_FORMAT_NAMES = {"EVT3": "evt3", "EVT3.0": "evt3", "EVT2": "evt2", "EVT2.0": "evt2"}

PLUGIN_SIZES: tuple[tuple[str, int, int], ...] = (
    ("imx636", 1280, 720),
    ("genx320", 320, 320),
    ("gen41", 1280, 720),
    ("gen4", 1280, 720),
    ("evk4", 1280, 720),
    ("gen31", 640, 480),
    ("gen3", 640, 480),
)
"""(substring of the lower-cased plugin/sensor name, width, height); the first match wins."""

MAX_HEADER_BYTES = 1 << 20
_GEOMETRY = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


@dataclass
class RawHeader:
    """What the ``"% "`` header of a RAW file says."""

    path: str
    fields: dict[str, str]
    format: str  # 'evt3' | 'evt2'
    width: Optional[int]
    height: Optional[int]
    plugin: Optional[str]
    serial: Optional[str]
    header_bytes: int  # offset of the first binary word
    size_source: Optional[str] = None  # 'geometry' | 'format' | 'plugin' | 'caller' | None
    lines: list[str] = field(default_factory=list, repr=False)


@dataclass
class RawRecording:
    """A whole RAW file, decoded."""

    header: RawHeader
    format: str
    width: int
    height: int
    events: np.ndarray  # EVENT_DTYPE
    triggers: np.ndarray  # TRIGGER_DTYPE
    bytes: int  # payload bytes (file size minus header)
    out_of_bounds: int = 0  # events dropped for lying outside the sensor
    time_jumps: int = 0  # TIME_HIGH words read as time bit errors
    unknown_words: int = 0  # reserved word types skipped (only with strict=False)


def _is_text(line: bytes) -> bool:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch >= " " or ch in "\t\r" for ch in text) and "\x7f" not in text


def _read_head(path) -> tuple[bytes, int]:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(min(size, MAX_HEADER_BYTES))
    except FileNotFoundError:
        raise FormatError(path, "no such file") from None
    except IsADirectoryError:
        raise FormatError(path, "is a directory, not a RAW file") from None
    except OSError as exc:
        raise FormatError(path, f"cannot be read: {exc.strerror or exc}") from None
    return head, size


def _parse_header(path, head: bytes, size: int) -> tuple[dict[str, str], list[str], int]:
    if size == 0:
        raise FormatError(path, "empty file (a RAW file starts with a '% ' header)", 0)
    if not head.startswith(b"% "):
        raise FormatError(path, "no '% ' header: not a Prophesee RAW file", 0)
    fields: dict[str, str] = {}
    lines: list[str] = []
    pos = 0
    while head.startswith(b"% ", pos):
        nl = head.find(b"\n", pos)
        raw_line = head[pos : nl if nl >= 0 else len(head)]
        if not _is_text(raw_line):
            break  # binary data that happens to start with '% '
        if nl < 0:
            if len(head) >= MAX_HEADER_BYTES:
                raise FormatError(path, f"header longer than {MAX_HEADER_BYTES} bytes", pos)
            raise FormatError(path, "file ends inside the header (truncated file?)", pos)
        text = raw_line.decode("utf-8").rstrip("\r")
        lines.append(text)
        pos = nl + 1
        body = text[2:].strip()
        if body == "end":
            break
        key, _, value = body.partition(" ")
        if key:
            fields.setdefault(key, value.strip())
    return fields, lines, pos


def _format_of(path, fields: dict[str, str]) -> tuple[str, dict[str, str]]:
    """('evt3'|'evt2', options of the % format line)."""
    fmt = None
    options: dict[str, str] = {}
    if "format" in fields:
        parts = [p.strip() for p in fields["format"].split(";")]
        name = parts[0].upper()
        for part in parts[1:]:
            k, _, v = part.partition("=")
            options[k.strip().lower()] = v.strip()
        if name not in _FORMAT_NAMES:
            raise FormatError(
                path, f"unsupported event format '% format {fields['format']}' (supported: EVT3, EVT2)", 0
            )
        fmt = _FORMAT_NAMES[name]
    if "evt" in fields:
        version = fields["evt"].strip()
        if version not in _EVT_VERSIONS:
            raise FormatError(path, f"unsupported '% evt {version}' (supported: 3.0, 2.0)", 0)
        if fmt is not None and fmt != _EVT_VERSIONS[version]:
            raise FormatError(
                path, f"header contradicts itself: '% evt {version}' but '% format {fields['format']}'", 0
            )
        fmt = _EVT_VERSIONS[version]
    if fmt is None:
        raise FormatError(path, "header names no event format ('% evt 3.0', '% evt 2.0' or '% format EVT3')", 0)
    return fmt, options


def size_from_plugin(name: Optional[str]) -> Optional[tuple[int, int]]:
    """Sensor size for a plugin/sensor name by :data:`PLUGIN_SIZES`, or None."""
    if not name:
        return None
    low = name.lower()
    for token, w, h in PLUGIN_SIZES:
        if token in low:
            return w, h
    return None


def _size_of(path, fields, options, width, height) -> tuple[Optional[int], Optional[int], Optional[str]]:
    if "geometry" in fields:
        m = _GEOMETRY.match(fields["geometry"])
        if not m:
            raise FormatError(path, f"cannot read '% geometry {fields['geometry']}' (expected WIDTHxHEIGHT)", 0)
        return int(m.group(1)), int(m.group(2)), "geometry"
    if "width" in options and "height" in options:
        try:
            return int(options["width"]), int(options["height"]), "format"
        except ValueError:
            raise FormatError(path, f"cannot read the size in '% format {fields['format']}'", 0) from None
    for key in ("plugin_name", "sensor_name"):
        size = size_from_plugin(fields.get(key))
        if size is not None:
            return size[0], size[1], "plugin"
    if width is not None and height is not None:
        return int(width), int(height), "caller"
    return None, None, None


def read_raw_header(path, width: Optional[int] = None, height: Optional[int] = None) -> RawHeader:
    """Parse the header of a RAW file. The size falls back to ``width``/``height``, else stays None."""
    if (width is None) != (height is None):
        raise ParameterError("give both width and height, or neither")
    head, size = _read_head(path)
    fields, lines, header_bytes = _parse_header(path, head, size)
    fmt, options = _format_of(path, fields)
    w, h, source = _size_of(path, fields, options, width, height)
    if w is not None and not (0 < w <= 2048 and 0 < h <= 2048):
        raise FormatError(path, f"sensor size {w}x{h} is outside 1..2048", 0)
    return RawHeader(
        path=os.fspath(path),
        fields=fields,
        format=fmt,
        width=w,
        height=h,
        plugin=fields.get("plugin_name"),
        serial=fields.get("serial_number", fields.get("serial")),
        header_bytes=header_bytes,
        size_source=source,
        lines=lines,
    )


def _require_size(header: RawHeader) -> None:
    if header.width is None:
        raise FormatError(
            header.path,
            "the header gives no sensor size (no '% geometry', no known plugin name); pass width and height",
            0,
        )


def _warn_partial(header: RawHeader, rem: int, offset: int) -> None:
    word = FORMATS[header.format][2]
    logging.getLogger("microexp").warning(
        f"warning: {header.path}: at byte {offset}: ignoring the last {rem} byte(s), a partial {word}-byte word "
        "(file cut off or a stray byte appended)"
    )


def _payload_size(header: RawHeader) -> int:
    """Payload bytes in whole words (a trailing partial word is dropped with a warning)."""
    size = os.path.getsize(header.path) - header.header_bytes
    word = FORMATS[header.format][2]
    rem = size % word
    if rem:
        _warn_partial(header, rem, header.header_bytes + size - rem)
    return size - rem


def _check_unknown(header: RawHeader, dec) -> None:
    if dec.unknown_words:
        off = header.header_bytes + dec.first_unknown_offset
        word = FORMATS[header.format][2]
        with open(header.path, "rb") as f:
            f.seek(off)
            value = int.from_bytes(f.read(word), "little")
        typ = value >> (8 * word - 4)
        name = header.format.upper()
        raise FormatError(
            header.path,
            f"reserved {name} word type 0x{typ:X} (word 0x{value:0{2 * word}X}; "
            f"{dec.unknown_words} such words): corrupt data or not {name}",
            off,
        )


def read_raw(path, width: Optional[int] = None, height: Optional[int] = None, strict: bool = True) -> RawRecording:
    """Read and decode a whole RAW file. ``strict=False`` skips reserved word types instead of raising."""
    header = read_raw_header(path, width, height)
    _require_size(header)
    nbytes = _payload_size(header)
    dec_cls, dtype, word = FORMATS[header.format]
    dec = dec_cls(header.width, header.height)
    words = np.fromfile(header.path, dtype=dtype, count=nbytes // word, offset=header.header_bytes)
    if words.shape[0] * word != nbytes:
        raise FormatError(header.path, "file changed while it was read", header.header_bytes + words.shape[0] * word)
    events, triggers = dec.decode_words(words)
    del words
    if strict:
        _check_unknown(header, dec)
    return RawRecording(
        header=header,
        format=header.format,
        width=header.width,
        height=header.height,
        events=events,
        triggers=triggers,
        bytes=nbytes,
        out_of_bounds=dec.out_of_bounds,
        time_jumps=dec.time_jumps,
        unknown_words=dec.unknown_words,
    )


def iter_raw(
    path, chunk_bytes: int = 1 << 22, width: Optional[int] = None, height: Optional[int] = None, strict: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decode a RAW file chunk by chunk: yields (events, triggers) for each chunk that holds any.

    Chunks are ``chunk_bytes`` of payload (any size: a chunk may end inside a word; the stateful decoder joins
    it). Errors are raised when reached, naming the byte offset; a trailing partial word raises at the end.
    """
    if int(chunk_bytes) <= 0:
        raise ParameterError(f"chunk_bytes must be positive, got {chunk_bytes}")
    header = read_raw_header(path, width, height)
    _require_size(header)
    dec_cls, _, word = FORMATS[header.format]
    dec = dec_cls(header.width, header.height)
    offset = header.header_bytes
    with open(header.path, "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read(int(chunk_bytes))
            if not chunk:
                break
            offset += len(chunk)
            events, triggers = dec.decode(chunk)
            if strict and dec.unknown_words:
                _check_unknown(header, dec)
            if events.shape[0] or triggers.shape[0]:
                yield events, triggers
    if dec.pending_bytes:
        _warn_partial(header, dec.pending_bytes, offset - dec.pending_bytes)


def raw_payload(path) -> np.ndarray:
    """The payload (all bytes after the header) as a read-only uint8 array mapped from the file.

    For passing EVT3 through undecoded (the words are little-endian; view as ``"<u2"`` for EVT3, ``"<u4"`` for
    EVT2). The sensor size does not have to be known (see :func:`read_raw_header` for it). A trailing partial
    word is left out (with a warning).
    """
    header = read_raw_header(path)
    nbytes = _payload_size(header)
    if nbytes == 0:
        return np.empty(0, dtype=np.uint8)
    return np.memmap(header.path, dtype=np.uint8, mode="r", offset=header.header_bytes, shape=(nbytes,))
