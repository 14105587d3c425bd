"""EVK4 mode:=device through OpenEB's HAL (built by `make openeb` from ../shared/openeb-src): the device code
path, run on the shared RAW recordings opened as devices (DeviceDiscovery.open_raw_file), publishes every CD
event and trigger over real DDS; bias files, ROI and ERC reach the HAL or say clearly why not."""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers.wait import wait_until

from microexp.drivers.evk4 import openeb_available
from microexp.drivers.evk4_settings import IMX636_BIAS_RANGES, check_biases, parse_bias_file
from microexp.errors import MicroexpError, ParameterError

RAW_FILES = ["expelliarmus_evt3_sample.raw", "expelliarmus_evt2_sample.raw", "prophesee_sparklers_gen3_evt2.raw"]

BIAS_FILE = """% gen 4.1 / IMX636 biases (Metavision Studio export)
% subsystem_ID 2
299 % bias_diff
-20 % bias_diff_off
15 % bias_diff_on
0 % bias_fo
0 % bias_hpf
10 % bias_refr
"""


@pytest.fixture
def openeb():
    reason = openeb_available()
    if reason:
        pytest.skip(f"OpenEB is not built here ({reason}); `make openeb` builds it from ../shared/openeb-src")
    import metavision_hal

    return metavision_hal


# -- bias files (no OpenEB needed) ------------------------------------------------------------------------


def test_bias_file_parses_and_is_checked_against_the_imx636_table(tmp_path):
    f = tmp_path / "face.bias"
    f.write_text(BIAS_FILE.replace("299 % bias_diff", "5 % bias_diff"))
    biases = parse_bias_file(f)
    assert biases == {
        "bias_diff": 5,
        "bias_diff_off": -20,
        "bias_diff_on": 15,
        "bias_fo": 0,
        "bias_hpf": 0,
        "bias_refr": 10,
    }
    check_biases(biases, IMX636_BIAS_RANGES, str(f))
    out_of_range = tmp_path / "o.bias"
    out_of_range.write_text(BIAS_FILE)
    with pytest.raises(ParameterError, match=r"o.bias: bias_diff = 299 is outside its allowed range -150\.\.200"):
        check_biases(parse_bias_file(out_of_range), IMX636_BIAS_RANGES, str(out_of_range))
    f.write_text("3 % bias_pr\n")
    with pytest.raises(ParameterError, match=r"unknown bias 'bias_pr' \(this sensor has: bias_diff, "):
        check_biases(parse_bias_file(f), IMX636_BIAS_RANGES, str(f))
    f.write_text("% header\n3 % bias_fo\nbias_hpf 3\n")
    with pytest.raises(ParameterError, match=r"face.bias: line 3: 'bias_hpf 3' is not 'VALUE % NAME'"):
        parse_bias_file(f)
    f.write_text("x3 % bias_fo\n")
    with pytest.raises(ParameterError, match=r"line 1: value 'x3' of bias_fo is not an integer"):
        parse_bias_file(f)
    with pytest.raises(ParameterError, match=r"nothere.bias: no such file"):
        parse_bias_file(tmp_path / "nothere.bias")


# -- decode -> EVT3 -> packets (no OpenEB needed) ----------------------------------------------------------


def test_packetizer_gives_back_every_event_and_trigger_in_file_sized_packets(testdata):
    from microexp.drivers.evk4 import Evt3Packetizer
    from microexp.events.dtype import TRIGGER_DTYPE
    from microexp.events.evt3 import Evt3Decoder
    from microexp.events.raw import read_raw

    rec = read_raw(testdata("events", "expelliarmus_evt3_sample.raw"))
    ev = rec.events
    rng = np.random.default_rng(1)
    tr = np.zeros(40, TRIGGER_DTYPE)
    tr["t"] = np.sort(rng.integers(int(ev["t"][0]), int(ev["t"][-1]), 40))
    tr["value"] = np.arange(40) % 2
    pk = Evt3Packetizer(rec.width, rec.height, packet_time_us=500, max_bytes=20_000)
    packets, i = [], 0
    while i < len(ev):  # HAL-like batches of random size, triggers with the batch of their time
        n = int(rng.integers(1, 30_000))
        b = ev[i : i + n]
        lo = -1 if i == 0 else int(ev["t"][i - 1])
        packets += pk.add(b, tr[(tr["t"] > lo) & (tr["t"] <= int(b["t"][-1]))])
        i += n
    packets += pk.flush()
    dec = Evt3Decoder(rec.width, rec.height)
    got = [dec.decode(p.words.tobytes()) for p in packets]
    out = np.concatenate([g[0] for g in got])
    assert len(out) == len(ev) and (out == ev).all()
    trig = np.concatenate([g[1] for g in got])
    assert (trig["t"] == tr["t"]).all() and (trig["value"] == tr["value"]).all()
    assert sum(len(p.trigger_words) for p in packets) == 3 * 40
    for p in packets:
        assert p.words.nbytes <= 20_000
        assert p.t_first_us // 500 == p.t_last_us // 500  # one interval of sensor time per packet


def raw_pieces(payload: bytes, rng, largest: int):
    """``payload`` in pieces of random size (odd sizes included), as USB buffers would bring it."""
    i = 0
    while i < len(payload):
        n = int(rng.integers(1, largest))
        yield payload[i : i + n]
        i += n


@pytest.mark.parametrize("max_bytes", [1_000_000, 3_000])
def test_raw_packetizer_cuts_the_sensor_words_as_file_playback_does(testdata, tmp_path, max_bytes):
    """device_read=raw: the sensor's bytes, arriving in pieces of any size, come out as packets of the same
    words in the same order; with room enough the cuts are file playback's own; triggers and events counted."""
    from microexp.events.evt3 import Evt3Decoder
    from microexp.events.evt3_split import Evt3Cutter, split_evt3
    from microexp.events.raw import raw_payload, read_raw

    path = raw_from_bag(testdata("bags", "event_camera_py_test_events_1"), tmp_path / "triggers.raw", 640, 480)
    payload = bytes(raw_payload(path))
    rec = read_raw(path)
    pk = Evt3Cutter(packet_time_us=1000, max_bytes=max_bytes)
    packets = []
    for piece in raw_pieces(payload, np.random.default_rng(3), 9_000):
        packets += pk.feed(piece)
        packets += pk.feed(b"") if len(packets) % 7 == 3 else []  # now and then nothing came in time: flush
    packets += pk.flush()
    assert b"".join(p.words.tobytes() for p in packets) == payload
    assert pk.bytes_in == len(payload) and pk.events_in == len(rec.events) == 343_474
    assert pk.triggers_in == len(rec.triggers) == 4157 == sum(len(p.trigger_words) for p in packets) // 3
    dec = Evt3Decoder(640, 480)
    events = np.concatenate([dec.decode(p.words.tobytes())[0] for p in packets])
    assert (events == rec.events).all()
    assert all(p.nbytes <= max_bytes for p in packets)
    if max_bytes == 1_000_000:
        words = np.frombuffer(payload, "<u2")
        file_cuts = [s for s, _, _ in split_evt3(words, 1000, max_bytes)]
        starts = np.cumsum([0] + [len(p.words) for p in packets[:-1]]).tolist()
        # a flush ahead of time (nothing came in time) may cut an interval early: every file cut is kept
        assert set(file_cuts) <= set(starts) and len(starts) < 1.2 * len(file_cuts)


def test_sensor_vector_form_round_trips(testdata):
    from microexp.events.evt3 import Evt3Decoder, Evt3Encoder
    from microexp.events.raw import read_raw

    ev = read_raw(testdata("events", "expelliarmus_evt3_sample.raw")).events
    payload, _ = Evt3Encoder(1280, 720, vectors="sensor").encode(ev)
    words = np.frombuffer(payload, "<u2")
    vect12 = np.flatnonzero((words >> 12) == 0x4)
    assert len(vect12) > 1000 and ((words[vect12[::2] + 1] >> 12) == 0x4).all()  # VECT_12 pairs ...
    assert ((words[vect12[::2] + 2] >> 12) == 0x5).all()  # ... then VECT_8
    out, _ = Evt3Decoder(1280, 720).decode(payload)
    assert (out == ev).all()


def test_device_packets_decode_with_openebs_own_decoder(openeb, testdata, tmp_path):
    """Wire compatibility: the EVT3 that the device path publishes, written as a RAW file, reads back through
    OpenEB's decoder (the sensor's 12-12-8 vector form) exactly as the original recording does."""
    from microexp.drivers.evk4 import Evt3Packetizer
    from microexp.events.raw import read_raw

    src = testdata("events", "expelliarmus_evt3_sample.raw")
    dev = open_raw_device(src)
    pk = Evt3Packetizer(dev.info.width, dev.info.height)
    dev.start()
    packets = []
    while (got := dev.read(0.05)) is not None:
        packets += pk.add(*got)
    packets += pk.flush()
    dev.close()
    out = tmp_path / "republished.raw"
    out.write_bytes(
        b"% evt 3.0\n% format EVT3;height=720;width=1280\n% geometry 1280x720\n% end\n"
        + b"".join(p.words.tobytes() for p in packets)
    )
    again = open_raw_device(out)
    again.start()
    parts = []
    while (got := again.read(0.05)) is not None:
        parts.append(got[0])
    again.close()
    ev = np.concatenate(parts)
    ref = read_raw(src).events
    assert len(ev) == len(ref) == 219_596 and (ev == ref).all()


# -- OpenEB: the device path over DDS ------------------------------------------------------------------------


def play_device(path, rate="0", timeout=300):
    # as README shows it: microexp play --evk4-device --evk4-file REC.raw --rate 0 --count
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "microexp.cli",
            "play",
            "--evk4-device",
            "--evk4-file",
            str(path),
            "--rate",
            rate,
            "--count",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1]), res.stderr


@pytest.mark.ros
@pytest.mark.parametrize("name", RAW_FILES)
def test_device_path_on_a_raw_file_publishes_every_event(openeb, testdata, name):
    from microexp.tools.info import describe

    path = testdata("events", name)
    counts, log = play_device(path)
    info = describe(path)
    ev = counts["/evk4/events"]
    assert ev["events"] == info["events"] and ev["on_events"] == info["on_events"]
    # EVT3 carries a 24-bit µs time: a decoder that joins the stream starts in the first 16.8 s epoch. The
    # sparklers file starts 913 s after its camera started (an EVT2 file, whose time has 34 bits): there the
    # times agree modulo 2**24 µs, with the same span.
    epoch = (info["t_first_us"] >> 24) << 24
    assert ev["t_first_us"] == info["t_first_us"] - epoch and ev["t_last_us"] == info["t_last_us"] - epoch
    assert (epoch == 0) == (name != "prophesee_sparklers_gen3_evt2.raw")
    assert ev["triggers"] == info["triggers"]
    assert ev["messages"] == ev["published"] > 1 and ev["seq_gaps"] == 0
    assert "(as a device)" in log


def run_graph_device(path, **params):
    """evk4_node mode:=device on ``path`` and a counting subscriber, in a process of its own, over DDS: the counts."""
    from microexp.ros.compose import overrides
    from microexp.ros.counter import CounterClient, with_loss
    from microexp.ros.nodes.evk4_node import Evk4Node
    from microexp.ros.runner import Runner

    counter = CounterClient(quiet_s=2.0, timeout_s=120.0)  # a subscriber in a process of its own
    g = Runner(threads=3)
    try:
        node = g.add(
            Evk4Node(
                parameter_overrides=overrides(
                    "evk4",
                    None,
                    mode="device",
                    device_file=str(path),
                    rate=0.0,
                    qos="reliable",
                    wait_for_subscribers_s=3.0,
                    **params,
                )
            )
        )
        g.start()
        assert node.finished.wait(120) and not node.error, node.error
        published = dict(node.published)
        return with_loss(counter.finish(published), published)
    finally:
        counter.kill()
        g.close()


def raw_from_bag(bag_dir, out, width, height):
    """The EVT3 stream of a metavision_driver bag (every packet's payload, in order) as a RAW file."""
    from microexp.bags.reader import Bag

    with Bag(bag_dir) as bag, open(out, "wb") as f:
        f.write(
            (
                f"% camera_integrator_name Prophesee\n% evt 3.0\n% format EVT3;height={height};width={width}\n"
                f"% geometry {width}x{height}\n% end\n"
            ).encode()
        )
        for _topic, msgtype, _, raw in bag.messages():
            if msgtype.endswith("EventPacket"):
                f.write(bytes(Bag.deserialize(raw, msgtype).events))
    return out


@pytest.mark.ros
@pytest.mark.parametrize("read", ["raw", "decode"])
def test_device_path_publishes_every_trigger(openeb, testdata, tmp_path, read):
    """A real EVT3 stream with external-trigger edges (the metavision_driver bag of event_camera_py's tests:
    2,079 edges of value 1 and 2,078 of value 0, see README), written as a RAW file and opened as a device;
    both ways from buffers to packets (device_read)."""
    if read == "raw":
        need_raw_binding()
    from microexp.tools.info import describe

    raw = raw_from_bag(testdata("bags", "event_camera_py_test_events_1"), tmp_path / "triggers.raw", 640, 480)
    info = describe(raw)
    assert info["events"] == 343_474 and info["on_events"] == 125_183 and info["triggers"] == 4157
    # 2.1 s of sensor time in 10 ms packets (211 messages), sent flat out to a counter in another process
    counts = run_graph_device(raw, packet_time_us=10_000, device_read=read)
    ev = counts["/evk4/events"]
    assert ev["events"] == info["events"] and ev["on_events"] == info["on_events"]
    assert ev["t_first_us"] == info["t_first_us"] and ev["t_last_us"] == info["t_last_us"]
    assert ev["triggers"] == 4157 == counts["/evk4/triggers"]["triggers"]
    assert ev["seq_gaps"] == 0 and counts["/evk4/triggers"]["seq_gaps"] == 0


def need_raw_binding():
    from microexp.drivers.evk4 import raw_reader_available

    reason = raw_reader_available()
    if reason:
        pytest.skip(reason)


def test_raw_binding_reads_the_payload_bytes_of_a_raw_device(openeb, testdata):
    """microexp_openeb_raw gives exactly the bytes OpenEB streams: the file's payload, in order, as OpenEB's own
    buffers (read_views: no copy; each stays valid while held, after the stream moved on and closed) and as
    copies (read)."""
    import microexp_openeb_raw

    from microexp.events.raw import raw_payload

    need_raw_binding()
    path = testdata("events", "expelliarmus_evt3_sample.raw")
    dev = open_raw_device(path)
    assert dev.data_format() == "EVT3" and dev.choose_read("auto")[0] == "raw"
    dev.start(raw=True)
    pieces = []
    while (got := dev.read(1.0, max_bytes=64_000)) is not None:
        pieces += got
    dev.close()
    assert hasattr(microexp_openeb_raw, "read_views") and all(type(p).__name__ == "HeldBuffer" for p in pieces)
    views = [np.frombuffer(p, np.uint8) for p in pieces]
    del pieces
    assert b"".join(v.tobytes() for v in views) == bytes(raw_payload(path))
    assert not views[0].flags.writeable
    assert dev.buffers >= len(views) >= 1 and dev.bytes_in == sum(len(v) for v in views)
    dev = open_raw_device(path)
    dev.start(raw=True)
    copies = []
    while (got := microexp_openeb_raw.read(dev._stream, 1.0, 64_000)) is not None:
        copies.append(got[0])
    dev.close()
    assert b"".join(copies) == bytes(raw_payload(path))


def test_device_read_raw_on_an_evt2_stream_is_a_clear_error(openeb, testdata):
    from microexp.drivers.evk4 import raw_reader_available

    dev = open_raw_device(testdata("events", "expelliarmus_evt2_sample.raw"))
    assert dev.data_format() == "EVT2"
    assert dev.choose_read("auto")[0] == "decode"
    with pytest.raises(
        ParameterError,
        match=r"parameter device_read: raw is not possible: .*"
        + ("streams EVT2, not EVT3" if raw_reader_available() is None else "raw binding"),
    ):
        dev.choose_read("raw")
    with pytest.raises(ParameterError, match=r"parameter device_read: 'fast' is not one of auto, raw, decode"):
        dev.choose_read("fast")
    dev.close()


# -- OpenEB: settings on a RAW device -------------------------------------------------------------------------


def open_raw_device(path):
    from microexp.drivers.evk4 import OpenEBDevice

    dev = OpenEBDevice(raw_file=str(path))
    dev.open()
    return dev


def test_raw_device_reports_geometry_and_serial(openeb, testdata):
    dev = open_raw_device(testdata("events", "expelliarmus_evt3_sample.raw"))
    assert (dev.info.width, dev.info.height) == (1280, 720)
    assert dev.info.serial.lstrip("0") == "307"  # the file header's serial_number
    dev.close()


def test_bias_file_on_a_raw_device(openeb, testdata, tmp_path):
    from microexp.drivers.evk4_settings import DeviceSettings

    dev = open_raw_device(testdata("events", "expelliarmus_evt3_sample.raw"))
    ok = tmp_path / "ok.bias"
    ok.write_text(BIAS_FILE.replace("299 % bias_diff", "5 % bias_diff"))
    notes = dev.configure(DeviceSettings(bias_file=str(ok), biases=parse_bias_file(ok)))
    if dev.info.facilities["i_ll_biases"]:
        assert notes == []
    else:
        assert notes == [
            f"RAW file {dev.raw_file} (as a device) has no bias facility (I_LL_Biases): bias_file "
            f"{ok} checked, not applied"
        ]
    unknown = tmp_path / "unknown.bias"
    unknown.write_text("3 % bias_pr\n")
    with pytest.raises(ParameterError, match=r"unknown.bias .*unknown bias 'bias_pr'"):
        dev.configure(DeviceSettings(bias_file=str(unknown), biases=parse_bias_file(unknown)))
    high = tmp_path / "high.bias"
    high.write_text("256 % bias_hpf\n")
    with pytest.raises(ParameterError, match=r"high.bias .*bias_hpf = 256 is outside its allowed range 0\.\.255"):
        dev.configure(DeviceSettings(bias_file=str(high), biases=parse_bias_file(high)))
    dev.close()


def test_roi_erc_trigger_and_sync_on_a_raw_device(openeb, testdata):
    from microexp.drivers.evk4_settings import DeviceSettings

    dev = open_raw_device(testdata("events", "expelliarmus_evt3_sample.raw"))
    notes = dev.configure(
        DeviceSettings(
            roi=(100, 50, 320, 240),
            erc_rate_mev_s=20.0,
            trigger_in=True,
            trigger_out_period_us=1000,
            sync_mode="master",
        )
    )
    have = dev.info.facilities
    expect = {
        "i_roi": "has no ROI facility (I_ROI): roi 100,50,320,240 not applied",
        "i_erc_module": "has no event-rate controller (I_ErcModule): erc_rate_mev_s 20 not applied",
        "i_trigger_in": "has no trigger input (I_TriggerIn): trigger_in not applied",
        "i_trigger_out": "has no trigger output (I_TriggerOut): trigger_out_period_us 1000 not applied",
        "i_camera_synchronization": "has no synchronisation facility (I_CameraSynchronization): "
        "sync_mode master not applied",
    }
    for facility, text in expect.items():
        assert any(text in n for n in notes) != have[facility], (facility, notes)
    with pytest.raises(ParameterError, match=r"roi: 1200,0,100,10 reaches outside the 1280x720 sensor"):
        dev.configure(DeviceSettings(roi=(1200, 0, 100, 10)))
    dev.close()


class Recorder:
    """Stands in for a HAL facility the RAW device lacks; records the calls made on it."""

    def __init__(self, log, name, returns=None):
        self._log, self._name, self._returns = log, name, returns or {}

    def __getattr__(self, method):
        def call(*args):
            self._log.append((self._name, method, args))
            return self._returns.get(method, True)

        return call


def test_settings_call_the_hal_facilities_with_hal_types(openeb, testdata):
    """Where a camera's facilities are absent (RAW device), the same configure() runs against recording
    stand-ins: it must call the HAL's method names with the HAL's own argument types."""
    from microexp.drivers.evk4_settings import DeviceSettings

    dev = open_raw_device(testdata("events", "expelliarmus_evt3_sample.raw"))
    calls = []
    real = dev._facility
    stand_in = {
        "i_roi": Recorder(calls, "roi"),
        "i_erc_module": Recorder(
            calls, "erc", {"get_min_supported_cd_event_rate": 0, "get_max_supported_cd_event_rate": 1_000_000_000}
        ),
        "i_trigger_in": Recorder(calls, "tin"),
        "i_trigger_out": Recorder(calls, "tout"),
        "i_camera_synchronization": Recorder(calls, "sync"),
    }
    dev._facility = lambda name: stand_in[name] if name in stand_in else real(name)
    notes = dev.configure(
        DeviceSettings(
            roi=(100, 50, 320, 240), erc_rate_mev_s=20.0, trigger_in=True, trigger_out_period_us=1000, sync_mode="slave"
        )
    )
    assert all("I_ROI" not in n and "I_Erc" not in n for n in notes)
    by = {(n, m): a for n, m, a in calls}
    window = by[("roi", "set_window")][0]
    assert isinstance(window, openeb.I_ROI.Window) and (window.x, window.y, window.width, window.height) == (
        100,
        50,
        320,
        240,
    )
    assert by[("roi", "set_mode")] == (openeb.I_ROI.Mode.ROI,) and by[("roi", "enable")] == (True,)
    assert by[("erc", "set_cd_event_rate")] == (20_000_000,) and by[("erc", "enable")] == (True,)
    assert by[("tin", "enable")] == (openeb.I_TriggerIn.Channel.MAIN,)
    assert by[("tout", "set_period")] == (1000,) and ("tout", "enable") in by
    assert ("sync", "set_mode_slave") in by
    for facility, method in [
        ("I_ROI", "set_window"),
        ("I_ROI", "set_mode"),
        ("I_ErcModule", "set_cd_event_rate"),
        ("I_TriggerIn", "enable"),
        ("I_TriggerOut", "set_period"),
        ("I_CameraSynchronization", "set_mode_slave"),
    ]:
        assert callable(getattr(getattr(openeb, facility), method)), (facility, method)
    dev.close()


# -- OpenEB: node behaviour --------------------------------------------------------------------------------


@pytest.mark.ros
def test_absent_camera_is_retried_with_one_line_each_time(openeb, graph):
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.evk4_node import Evk4Node

    node = graph.add(
        Evk4Node(
            parameter_overrides=overrides("evk4", None, mode="device", serial="NO-SUCH-CAMERA", retry_interval_s=0.2)
        )
    )
    graph.start()
    wait_until(lambda: node.open_failures >= 3, 30, "the EVK4 node did not retry three times")
    assert not node.finished.is_set()


@pytest.mark.ros
def test_play_evk4_device_without_a_camera_retries_until_interrupted(openeb):
    """README: `microexp play --evk4-device --count` (no camera here: it keeps retrying, one line each time)."""
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "microexp.cli", "play", "--evk4-device", "--count"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    err_lines: list[str] = []

    def read_err():
        for line in proc.stderr:
            err_lines.append(line)

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    try:
        wait_until(
            lambda: any("cannot be opened" in line for line in err_lines), 60, "no 'cannot be opened' line on stderr"
        )
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=30)
        err = "".join(err_lines)
    finally:  # a hang must fail this test only: a node left running would publish into the next tests' graphs
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    lines = [line for line in err.splitlines() if "cannot be opened" in line]
    assert lines and "EVK4 camera (first found) cannot be opened" in lines[0] and "retrying in 2 s" in lines[0]
    assert proc.returncode in (0, 130)


def test_make_openeb_is_cached(openeb):
    """README: `make openeb` (CI built it before the tests: a second run finds the cache)."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    res = subprocess.run(["make", "openeb"], cwd=repo, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "[openeb] cached:" in res.stderr
    t0 = time.monotonic()
    res = subprocess.run(["bash", "scripts/openeb.sh"], cwd=repo, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "[openeb] cached:" in res.stderr, res.stderr[-2000:]
    assert time.monotonic() - t0 < 60
    prefix = Path(res.stdout.strip().splitlines()[-1])
    assert (prefix / "env.sh").is_file() and (prefix / ".microexp-openeb").is_file()
    check = subprocess.run(
        [str(repo / ".venv" / "bin" / "python"), "-c", "import metavision_hal, numpy; print(numpy.__version__)"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and check.stdout.startswith("2."), check.stderr


def test_bad_bias_file_fails_the_node_at_start(openeb, graph, tmp_path):
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.evk4_node import Evk4Node

    bad = tmp_path / "bad.bias"
    bad.write_text("% ok\n12 bias_fo\n")
    with pytest.raises(MicroexpError, match=r"bad.bias: line 2: '12 bias_fo' is not 'VALUE % NAME'"):
        Evk4Node(parameter_overrides=overrides("evk4", None, mode="device", bias_file=str(bad)))


@pytest.mark.ros
def test_out_of_range_bias_stops_the_device_with_one_line(openeb, graph, testdata, tmp_path):
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.evk4_node import Evk4Node

    high = tmp_path / "high.bias"
    high.write_text("-151 % bias_fo\n")
    node = graph.add(
        Evk4Node(
            parameter_overrides=overrides(
                "evk4",
                None,
                mode="device",
                device_file=str(testdata("events", "expelliarmus_evt3_sample.raw")),
                bias_file=str(high),
            )
        )
    )
    graph.start()
    assert node.finished.wait(30)
    assert "bias_fo = -151 is outside its allowed range -150..200" in node.error
    assert node.packets == 0


@pytest.mark.ros
def test_sensor_serial_and_geometry_reach_the_session_manifest(graph, testdata, tmp_path):
    from microexp.bags.manifest import validate
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.evk4_node import Evk4Node
    from microexp.ros.nodes.recorder_node import RecorderNode

    graph.add(
        RecorderNode(
            parameter_overrides=overrides(
                "recorder",
                None,
                out=str(tmp_path / "rec"),
                subject="S01",
                topics=["/evk4/events|event_camera_msgs/msg/EventPacket"],
            )
        )
    )
    graph.add(
        Evk4Node(
            parameter_overrides=overrides(
                "evk4", None, mode="file", file=str(testdata("events", "expelliarmus_evt3_sample.raw")), rate=0.0
            )
        )
    )
    graph.start()
    manifest = next((tmp_path / "rec").rglob("manifest.json"))
    # the file on disk, as a user reads it (the recorder notes the sensor, then writes the file)
    doc = wait_until(
        lambda: "evk4" in (d := json.loads(manifest.read_text()))["sensors"] and d,
        30,
        "the manifest never named the EVK4",
    )
    validate(doc)
    info = doc["sensors"]["evk4"]
    assert info["serial"] == "00000307" and (info["width"], info["height"]) == (1280, 720)
    assert info["topic"] == "/evk4/events"


@pytest.mark.ros
def test_bench_evk4_device_reports_each_node_run_and_its_loss(openeb, testdata):
    """`microexp bench evk4-device` (a short run): both node paths, each run's packets sent, received and
    missing, the device/file ratio as min/median/max; nothing lost."""
    testdata("events", "expelliarmus_evt3_sample.raw")
    res = subprocess.run(
        [sys.executable, "-m", "microexp.cli", "bench", "--events", "2000000", "--repeat", "1", "evk4-device"]
        + ["--", "--node-repeat", "2", "--busy", "0"],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads([ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1])
    node = out["node_busy_0"]
    assert node["busy"] == 0 and node["rounds"] == 2
    for path in ("file", "device_raw", "device_decode"):
        runs = node[f"node_{path}_runs"]
        assert len(runs) == 2 and all(r["sent"] == r["received"] > 0 and r["seq_missing"] == 0 for r in runs), runs
        spread = node[f"node_{path}_mev_s"]
        assert 0 < spread["min"] <= spread["median"] <= spread["max"]
        assert node[f"node_{path}_lost"] == 0
    assert 0 < node["node_device_raw_over_file"]["min"] <= node["node_device_raw_over_file"]["max"]
    assert out["device_raw_events"] == 2_000_000 == out["device_decode_events"]


def test_lag_monitor_warns_once_when_publishing_falls_behind_the_camera():
    """A fixed latency is not lag; a node that publishes 1 s of camera time in 1.5 s falls behind: one warning
    when past warn_ms, every later packet counted, the largest lag kept; a new stream starts a new floor."""
    from microexp.playback import LagMonitor

    lag = LagMonitor(warn_ms=100.0)
    steady = [lag.update(k * 1000, 5.0 + 0.02 + k * 1e-3) for k in range(1000)]  # 20 ms latency, keeping up
    assert not any(steady) and lag.late == 0 and lag.max_ms < 1e-6
    warned = [lag.update(1_000_000 + k * 1000, 6.02 + k * 1.5e-3) for k in range(1000)]  # 1.5 s per s
    assert warned.count(True) == 1 and 100 < lag.max_ms <= 501
    first = warned.index(True)
    assert lag.late == 1000 - first and abs((first + 1) * 0.5 - 100) < 1.0  # past 100 ms after ~200 packets
    lag.restart()
    assert not lag.update(5_000_000, 100.0) and not lag.update(5_001_000, 100.001) and lag.lag_ms < 1e-6
    assert not LagMonitor(100.0, rate=0.0).update(0, 0.0)  # flat out: no real time to fall behind
