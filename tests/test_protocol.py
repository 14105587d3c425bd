"""The elicitation protocol state machine (pure core; the graph test drives it through real services)."""

from microexp.protocol import Phase, ProtocolRunner, Timing, parse_aus


class Ledger:
    """Keeps the segment calls the runner makes, as the recorder would see them."""

    def __init__(self):
        self.calls = []
        self.next_id = 0

    def start_segment(self, au, trial):
        self.next_id += 1
        self.calls.append(("start", au, trial, self.next_id))
        return self.next_id

    def stop_segment(self, status):
        self.calls.append(("stop", status))

    def mark_redone(self, seg_id):
        self.calls.append(("redone", seg_id))


T = Timing(demo_s=1, countdown_s=1, perform_s=1, beep_s=0.5, rest_s=1)


def run_until_done(runner, t=0.0, step=0.1, keys=None):
    keys = dict(keys or {})
    runner.start(t)
    while runner.phase != Phase.DONE and t < 1000:
        t = round(t + step, 6)
        if t in keys:
            getattr(runner, keys.pop(t))(t)
        runner.tick(t)
    return t


def test_parse_aus():
    assert parse_aus("AU2,au12, 45") == ["AU2", "AU12", "AU45"]
    assert len(parse_aus("all")) == 21 and parse_aus(None)[0] == "AU2"


def test_full_run_records_one_kept_segment_per_au():
    ledger = Ledger()
    r = ProtocolRunner(["AU2", "AU12", "AU45"], ledger, T)
    end = run_until_done(r)
    assert [c[1] for c in ledger.calls if c[0] == "start"] == ["AU2", "AU12", "AU45"]
    assert [c for c in ledger.calls if c[0] == "stop"] == [("stop", "kept")] * 3
    assert abs(end - 3 * 4.5) < 0.2
    assert sum(1 for k, _ in r.log if k == "beep") == 3


def test_redo_during_performance_marks_redone_and_repeats_the_au():
    ledger = Ledger()
    r = ProtocolRunner(["AU4", "AU6"], ledger, T)
    run_until_done(r, keys={1.5: "redo"})  # in the countdown of AU4's first take
    starts = [c for c in ledger.calls if c[0] == "start"]
    assert [(c[1], c[2]) for c in starts] == [("AU4", 1), ("AU4", 2), ("AU6", 1)]
    assert ("stop", "redone") in ledger.calls


def test_redo_in_rest_marks_previous_take():
    ledger = Ledger()
    r = ProtocolRunner(["AU9"], ledger, T)
    run_until_done(r, keys={4.0: "redo"})  # rest after the first take
    assert ("redone", 1) in ledger.calls
    assert [c[2] for c in ledger.calls if c[0] == "start"] == [1, 2]


def test_pause_stretches_and_skip_discards():
    ledger = Ledger()
    r = ProtocolRunner(["AU2", "AU5"], ledger, T)
    end = run_until_done(r, keys={2.5: "pause", 7.5: "pause", 8.0: "skip"})
    # AU2 paused 5 s during its performance, then skipped before it ended: discarded; AU5 runs normally
    assert ledger.calls[:2] == [("start", "AU2", 1, 1), ("stop", "discarded")]
    assert [c[1] for c in ledger.calls if c[0] == "start"] == ["AU2", "AU5"]
    assert end >= 8.0 + 4.5


def test_quit_discards_the_take_in_progress():
    ledger = Ledger()
    r = ProtocolRunner(["AU2", "AU5"], ledger, T)
    run_until_done(r, keys={2.2: "quit"})
    assert ledger.calls[-1] == ("stop", "discarded")


def test_takes_repeat_each_au_with_consecutive_trials():
    ledger = Ledger()
    r = ProtocolRunner(["AU2", "AU12"], ledger, T, takes=3, first_trial=4)
    run_until_done(r)
    starts = [(c[1], c[2]) for c in ledger.calls if c[0] == "start"]
    assert starts == [("AU2", 4), ("AU2", 5), ("AU2", 6), ("AU12", 4), ("AU12", 5), ("AU12", 6)]
    assert [c for c in ledger.calls if c[0] == "stop"] == [("stop", "kept")] * 6


def test_a_redone_take_does_not_count_towards_the_takes():
    ledger = Ledger()
    r = ProtocolRunner(["AU4", "AU6"], ledger, T, takes=2)
    # 4.0 s: the first AU4 take is in its rest phase -> redo marks it redone; two kept takes still follow
    run_until_done(r, keys={4.0: "redo"})
    starts = [(c[1], c[2]) for c in ledger.calls if c[0] == "start"]
    assert starts == [("AU4", 1), ("AU4", 2), ("AU4", 3), ("AU6", 1), ("AU6", 2)]
    assert ledger.calls.count(("stop", "kept")) == 5 and ("redone", 1) in ledger.calls


def test_bad_takes_are_refused():
    import pytest

    with pytest.raises(ValueError, match="takes"):
        ProtocolRunner(["AU2"], Ledger(), T, takes=0)
