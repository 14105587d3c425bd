"""Prophesee RAW readers: the real recordings decode to their known counts (and to what expelliarmus reads),
chunked reading equals whole-file reading, and every kind of bad file is a FormatError naming file and offset."""

from __future__ import annotations

import numpy as np
import pytest

from microexp.errors import FormatError, ParameterError
from microexp.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE, make_events
from microexp.events.evt2 import Evt2Encoder
from microexp.events.evt3 import Evt3Encoder
from microexp.events.raw import PLUGIN_SIZES, iter_raw, raw_payload, read_raw, read_raw_header, size_from_plugin

EVT3_SAMPLE = ("events", "expelliarmus_evt3_sample.raw")
EVT2_SAMPLE = ("events", "expelliarmus_evt2_sample.raw")
SPARKLERS = ("events", "prophesee_sparklers_gen3_evt2.raw")


def _expelliarmus(path, encoding):
    expelliarmus = pytest.importorskip("expelliarmus")
    return expelliarmus.Wizard(encoding=encoding, fpath=str(path)).read()


def test_evt3_sample_counts_and_size_from_plugin(testdata):
    rec = read_raw(testdata(*EVT3_SAMPLE))
    ev = rec.events
    assert rec.format == "evt3" and (rec.width, rec.height) == (1280, 720)
    assert rec.header.plugin == "hal_plugin_gen41_evk3" and rec.header.size_source == "plugin"
    assert rec.header.serial == "00000307"
    assert ev.dtype == EVENT_DTYPE and rec.triggers.dtype == TRIGGER_DTYPE
    assert ev.shape[0] == 219_596
    assert int(ev["x"].max()) == 1279 and int(ev["y"].max()) == 719
    # SOURCES.md: TIME_HIGH/LOW span 11,718,656-11,730,943 µs, i.e. TIME_HIGH 2861..2863; events lie inside it
    assert int(ev["t"].min()) == 11_718_656
    assert int(ev["t"].max()) <= 11_730_943 and int(ev["t"].max()) >> 12 == 11_730_943 >> 12
    assert rec.out_of_bounds == rec.time_jumps == rec.unknown_words == 0
    assert rec.bytes == 618_052 - rec.header.header_bytes


def test_evt3_sample_matches_expelliarmus(testdata):
    path = testdata(*EVT3_SAMPLE)
    ours = read_raw(path).events
    theirs = _expelliarmus(path, "evt3")
    assert theirs.shape == ours.shape
    for k in ("x", "y", "p"):
        np.testing.assert_array_equal(theirs[k].astype(np.int64), ours[k].astype(np.int64))
    # expelliarmus adds 4096 µs per decrease of TIME_LOW on top of TIME_HIGH (its t reaches 11,772,513):
    # the difference is a non-negative, non-decreasing multiple of 4096
    drift = theirs["t"] - ours["t"]
    assert (drift % 4096 == 0).all() and drift.min() == 0 and (np.diff(drift) >= 0).all()
    assert int(theirs["t"].max()) == 11_772_513


def test_evt2_sample_counts_and_expelliarmus(testdata):
    path = testdata(*EVT2_SAMPLE)
    rec = read_raw(path)
    ev = rec.events
    assert rec.format == "evt2" and (rec.width, rec.height) == (640, 480)
    assert ev.shape[0] == 539_481
    assert int(ev["t"].max() - ev["t"].min()) == 50_000
    theirs = _expelliarmus(path, "evt2")
    for k in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(theirs[k].astype(np.int64), ev[k].astype(np.int64))


def test_sparklers_counts_and_expelliarmus(testdata):
    path = testdata(*SPARKLERS)
    rec = read_raw(path)
    ev = rec.events
    assert (rec.width, rec.height) == (640, 480) and rec.header.fields["evt"] == "2.0"
    assert ev.shape[0] == 521_252 and int(ev["p"].sum()) == 185_861
    assert ev["t"].min() / 1e6 == pytest.approx(913.716, abs=5e-4)
    assert ev["t"].max() / 1e6 == pytest.approx(913.812, abs=5e-4)
    theirs = _expelliarmus(path, "evt2")
    for k in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(theirs[k].astype(np.int64), ev[k].astype(np.int64))


@pytest.mark.parametrize("name", [EVT3_SAMPLE, SPARKLERS])
@pytest.mark.parametrize("chunk", [4093, 65_536])
def test_iter_raw_equals_read_raw(testdata, name, chunk):
    path = testdata(*name)
    whole = read_raw(path).events
    parts = [e for e, _ in iter_raw(path, chunk_bytes=chunk)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert len(parts) > 1


def test_raw_payload_is_the_bytes_after_the_header(testdata):
    path = testdata(*EVT3_SAMPLE)
    header = read_raw_header(path)
    payload = raw_payload(path)
    data = path.read_bytes()
    assert payload.dtype == np.uint8 and payload.shape[0] == len(data) - header.header_bytes
    assert payload[:16].tobytes() == data[header.header_bytes : header.header_bytes + 16]
    assert not payload.flags.writeable


# ------------------------------------------------------------------------------------------- written files

HEADER3 = b"% date 2026-01-01\n% evt 3.0\n% plugin_name hal_plugin_imx636_evk4\n% serial_number 42\n"


def _events(n=500, width=1280, height=720, seed=1):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 30_000_000, n))
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))


def _write(tmp_path, name, header: bytes, payload: bytes = b""):
    path = tmp_path / name
    path.write_bytes(header + payload)
    return path


def test_written_evt3_and_evt2_files_round_trip(tmp_path):
    ev = _events()
    p3 = _write(tmp_path, "a.raw", HEADER3 + b"% end\n", Evt3Encoder(1280, 720).encode(ev)[0])
    rec = read_raw(p3)
    np.testing.assert_array_equal(rec.events, ev)
    assert rec.header.fields["serial_number"] == "42" and rec.header.header_bytes == len(HEADER3) + 6
    small = _events(width=320, height=240)
    p2 = _write(tmp_path, "b.raw", b"% evt 2.0\n% geometry 320x240\n", Evt2Encoder(320, 240).encode(small)[0])
    rec2 = read_raw(p2)
    assert (rec2.width, rec2.height, rec2.header.size_source) == (320, 240, "geometry")
    np.testing.assert_array_equal(rec2.events, small)


def test_format_line_gives_format_and_size(tmp_path):
    ev = _events(width=100, height=50)
    path = _write(tmp_path, "f.raw", b"% format EVT3;height=50;width=100\n% end\n", Evt3Encoder(100, 50).encode(ev)[0])
    header = read_raw_header(path)
    assert (header.format, header.width, header.height, header.size_source) == ("evt3", 100, 50, "format")
    np.testing.assert_array_equal(read_raw(path).events, ev)


def test_binary_that_starts_like_a_header_line(tmp_path):
    # first word 0x2025 is ADDR_X x=37, whose bytes are '%', ' '; the next word has a zero byte: not text
    payload = np.array([0x2025, 0x0005, 0x8001, 0x2026], dtype="<u2").tobytes()
    path = _write(tmp_path, "g.raw", b"% evt 3.0\n% geometry 64x64\n", payload)
    rec = read_raw(path)
    assert rec.header.header_bytes == len(b"% evt 3.0\n% geometry 64x64\n")
    assert rec.events["x"].tolist() == [37, 38] and rec.events["y"].tolist() == [0, 5]


def test_plugin_table():
    assert size_from_plugin("hal_plugin_gen3_fx3") == (640, 480)
    assert size_from_plugin("hal_plugin_gen41_evk3") == (1280, 720)
    assert size_from_plugin("hal_plugin_imx636_evk4") == (1280, 720)
    assert size_from_plugin("hal_plugin_gen31_fx3") == (640, 480)
    assert size_from_plugin("hal_plugin_genx320") == (320, 320)
    assert size_from_plugin("something_else") is None and size_from_plugin(None) is None
    assert all(token == token.lower() for token, _, _ in PLUGIN_SIZES)


def test_size_from_the_caller_when_the_header_has_none(tmp_path):
    ev = _events(width=200, height=100)
    payload = Evt3Encoder(200, 100).encode(ev)[0]
    path = _write(tmp_path, "c.raw", b"% evt 3.0\n% plugin_name hal_plugin_unknown\n", payload)
    assert read_raw_header(path).width is None
    with pytest.raises(FormatError, match="no sensor size") as err:
        read_raw(path)
    assert err.value.path == str(path) and err.value.offset == 0
    with pytest.raises(FormatError, match="no sensor size"):
        next(iter_raw(path))
    rec = read_raw(path, width=200, height=100)
    assert rec.header.size_source == "caller"
    np.testing.assert_array_equal(rec.events, ev)
    with pytest.raises(ParameterError):
        read_raw(path, width=200)


# ------------------------------------------------------------------------------------------- bad input


def _bad(path, match, offset):
    with pytest.raises(FormatError, match=match) as err:
        read_raw(path)
    assert err.value.path == str(path)
    assert err.value.offset == offset
    assert str(path) in str(err.value) and (offset is None or f"at byte {offset}" in str(err.value))
    return err.value


def test_empty_file(tmp_path):
    _bad(_write(tmp_path, "empty.raw", b""), "empty file", 0)


def test_missing_file_and_directory(tmp_path):
    _bad(tmp_path / "nope.raw", "no such file", None)
    _bad(tmp_path, "directory", None)


def test_wrong_magic_and_no_header(tmp_path):
    _bad(_write(tmp_path, "aedat.raw", b"#!AER-DAT4.0\r\n"), "no '% ' header", 0)
    words = Evt3Encoder(1280, 720).encode(_events())[0]
    _bad(_write(tmp_path, "headless.raw", b"", words), "no '% ' header", 0)
    _bad(_write(tmp_path, "percent.raw", b"%evt 3.0\n"), "no '% ' header", 0)


def test_header_cut_short(tmp_path):
    _bad(_write(tmp_path, "cut.raw", b"% evt 3.0\n% geometry 12"), "ends inside the header", 10)


def test_trailing_partial_word_is_dropped_with_a_warning(tmp_path, testdata, caplog):
    """A stray byte at the end (or a file cut mid-word) costs that partial word, not the file (issue 15)."""
    src = testdata(*EVT3_SAMPLE).read_bytes()
    whole = read_raw(testdata(*EVT3_SAMPLE)).events
    for name, data in (("cut3.raw", src[:-1]), ("stray3.raw", src + b"\x07")):
        path = _write(tmp_path, name, data)
        caplog.clear()
        with caplog.at_level("WARNING", logger="microexp"):
            rec = read_raw(path)
        assert len(caplog.records) == 1
        msg = caplog.records[0].getMessage()
        assert str(path) in msg and "partial 2-byte word" in msg and f"at byte {len(data) - 1}" in msg
        expected = whole if name.startswith("stray") else read_raw(_write(tmp_path, "whole.raw", src[:-2])).events
        assert np.array_equal(rec.events, expected)
        chunks = [e for e, _ in iter_raw(path, chunk_bytes=100_001)]
        assert sum(len(e) for e in chunks) == len(expected)
        assert len(raw_payload(path)) % 2 == 0
    src2 = testdata(*SPARKLERS).read_bytes()
    with caplog.at_level("WARNING", logger="microexp"):
        rec2 = read_raw(_write(tmp_path, "trunc2.raw", src2[:-3]))
    assert "partial 4-byte word" in caplog.records[-1].getMessage() and len(rec2.events) > 0


def test_random_bytes(tmp_path):
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    _bad(_write(tmp_path, "noise.raw", noise.replace(b"%", b"#")), "no '% ' header", 0)
    header = b"% evt 3.0\n% geometry 1280x720\n% end\n"
    path = _write(tmp_path, "noise3.raw", header, noise)
    err = _bad(path, "reserved EVT3 word type", _first_reserved(noise, 2, (1, 9, 11, 12, 13)) + len(header))
    assert err.offset >= len(header)
    rec = read_raw(path, strict=False)  # lenient: decodes what it can and counts the rest
    assert rec.unknown_words > 0
    with pytest.raises(FormatError, match="reserved"):
        list(iter_raw(path, chunk_bytes=333))
    header2 = b"% evt 2.0\n% geometry 640x480\n"
    _bad(
        _write(tmp_path, "noise2.raw", header2, noise),
        "reserved EVT2 word type",
        _first_reserved(noise, 4, (2, 3, 4, 5, 6, 7, 9, 11, 12, 13)) + len(header2),
    )


def _first_reserved(data: bytes, word: int, types) -> int:
    words = np.frombuffer(data, dtype="<u2" if word == 2 else "<u4")
    bad = np.isin(words >> (8 * word - 4), types)
    return int(np.argmax(bad)) * word


def test_unknown_or_missing_format(tmp_path):
    _bad(_write(tmp_path, "v21.raw", b"% evt 2.1\n% geometry 640x480\n"), r"unsupported '% evt 2.1'", 0)
    _bad(_write(tmp_path, "v4.raw", b"% evt 4.0\n"), r"unsupported '% evt 4.0'", 0)
    _bad(_write(tmp_path, "fmt.raw", b"% format EVT21;width=4;height=4\n"), "unsupported event format", 0)
    _bad(_write(tmp_path, "none.raw", b"% geometry 640x480\n% end\n"), "names no event format", 0)
    _bad(_write(tmp_path, "both.raw", b"% evt 2.0\n% format EVT3\n"), "contradicts", 0)
    _bad(_write(tmp_path, "geom.raw", b"% evt 3.0\n% geometry big\n"), "cannot read '% geometry", 0)
    _bad(_write(tmp_path, "huge.raw", b"% evt 3.0\n% geometry 5000x10\n"), "outside 1..2048", 0)


def test_header_only_file_is_an_empty_recording(tmp_path):
    rec = read_raw(_write(tmp_path, "h.raw", b"% evt 3.0\n% geometry 64x48\n% end\n"))
    assert rec.events.shape == (0,) and rec.triggers.shape == (0,) and rec.bytes == 0
    assert list(iter_raw(tmp_path / "h.raw")) == []
    with pytest.raises(ParameterError):
        list(iter_raw(tmp_path / "h.raw", chunk_bytes=0))
