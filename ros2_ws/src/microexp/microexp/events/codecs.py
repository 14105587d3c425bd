"""EventPacket payload codecs, chosen by the packet's ``encoding`` string.

A decoder is stateful: it carries what a payload leaves unfinished (EVT3's current row, base x and
time high bits; a word split across packets; libcaer's timestamp rollover) into the next packet of the
same stream, so a stream must keep one decoder for its whole life.

Decoder protocol::

    dec = make_decoder("evt3", width=1280, height=720)
    events, triggers = dec.decode(payload, time_base=0)   # EVENT_DTYPE / TRIGGER_DTYPE arrays
    dec.reset()                                            # forget state (stream restart)

Encoder protocol::

    enc = make_encoder("evt3", width=1280, height=720)
    payload, time_base = enc.encode(events)                # bytes, int (ns for libcaer*, 0 for evt3)
"""

from __future__ import annotations

import importlib

from microexp.errors import ParameterError

# encoding -> (module, decoder class, encoder class or None)
_CODECS: dict[str, tuple[str, str, str | None]] = {
    "evt3": ("microexp.events.evt3", "Evt3Decoder", "Evt3Encoder"),
    "libcaer": ("microexp.events.libcaer", "LibcaerDecoder", "LibcaerEncoder"),
    "libcaer_cmp": ("microexp.events.libcaer", "LibcaerCmpDecoder", "LibcaerCmpEncoder"),
}

DECODABLE = tuple(_CODECS)
ENCODABLE = tuple(k for k, v in _CODECS.items() if v[2] is not None)


def _lookup(encoding: str, index: int, what: str):
    try:
        entry = _CODECS[encoding]
    except KeyError:
        raise ParameterError(f"encoding {encoding!r} is not supported (known: {', '.join(_CODECS)})") from None
    if entry[index] is None:
        raise ParameterError(
            f"encoding {encoding!r} has no {what} (can {what}: {', '.join(ENCODABLE if index == 2 else DECODABLE)})"
        )
    return getattr(importlib.import_module(entry[0]), entry[index])


def make_decoder(encoding: str, width: int, height: int):
    """A fresh decoder for one stream of EventPacket payloads in ``encoding``."""
    return _lookup(encoding, 1, "decoder")(width=width, height=height)


def make_encoder(encoding: str, width: int, height: int):
    """A fresh encoder producing EventPacket payloads in ``encoding``."""
    return _lookup(encoding, 2, "encoder")(width=width, height=height)
