"""Spotting and spot-then-recognise scores (microexp.scoring) on hand-made timelines."""

from __future__ import annotations

import math

import pytest

from microexp.scoring import (
    Interval,
    SpotCounts,
    count,
    iou,
    match,
    recognition_scores,
    segment_accuracy,
    spotting_scores,
)


def iv(start, end, label=None):
    return Interval(start, end, label)


# --- IoU -----------------------------------------------------------------------------------------------------


def test_iou_disjoint_and_touching_are_zero():
    assert iou(iv(0, 10), iv(20, 30)) == 0.0
    assert iou(iv(0, 10), iv(10, 20)) == 0.0
    assert iou(iv(10, 20), iv(0, 10)) == 0.0


def test_iou_identical_containment_and_partial():
    assert iou(iv(3, 7), iv(3, 7)) == 1.0
    # [2, 4] inside [0, 8]: 2 / 8
    assert iou(iv(2, 4), iv(0, 8)) == 0.25
    assert iou(iv(0, 8), iv(2, 4)) == 0.25
    # [0, 10] and [5, 15]: 5 / 15
    assert math.isclose(iou(iv(0, 10), iv(5, 15)), 1 / 3)


def test_iou_zero_length():
    assert iou(iv(5, 5), iv(5, 5)) == 1.0
    assert iou(iv(5, 5), iv(6, 6)) == 0.0
    assert iou(iv(5, 5), iv(0, 10)) == 0.0


def test_iou_nanoseconds_since_epoch_are_exact():
    t0 = 1_700_000_000_000_000_000
    assert iou(iv(t0, t0 + 2_000), iv(t0, t0 + 4_000)) == 0.5


def test_iou_exactly_threshold_is_tp_and_just_below_is_not():
    g = iv(0, 4)
    # [0, 2] against [0, 4]: IoU exactly 0.5
    assert iou(iv(0, 2), g) == 0.5
    assert match([iv(0, 2)], [g]) == [(0, 0, 0.5)]
    c = count([iv(0, 2)], [g])
    assert (c.tp, c.fp, c.fn) == (1, 0, 0)
    # [0, 1.999] against [0, 4]: just below 0.5
    assert iou(iv(0, 1.999), g) < 0.5
    c = count([iv(0, 1.999)], [g])
    assert (c.tp, c.fp, c.fn) == (0, 1, 1)


def test_threshold_is_a_parameter():
    w, g = iv(0, 10), iv(5, 15)  # IoU 1/3
    assert count([w], [g]).tp == 0
    assert count([w], [g], threshold=0.3).tp == 1
    assert count([iv(0, 10)], [iv(0, 10)], threshold=1.0).tp == 1
    assert count([iv(0, 10)], [iv(0, 11)], threshold=1.0).tp == 0


# --- matching and counts -------------------------------------------------------------------------------------


def test_empty_spotted_and_or_truth():
    c = count([], [])
    assert (c.tp, c.fp, c.fn, c.pairs) == (0, 0, 0, [])
    s = spotting_scores(c)
    assert s["precision"] is None and s["recall"] is None and s["f1"] is None

    c = count([], [iv(0, 10), iv(20, 30)])
    assert (c.tp, c.fp, c.fn) == (0, 0, 2)
    s = spotting_scores(c)
    assert s["precision"] is None
    assert s["recall"] == 0.0 and s["f1"] == 0.0

    c = count([iv(0, 10)], [])
    assert (c.tp, c.fp, c.fn) == (0, 1, 0)
    s = spotting_scores(c)
    assert s["precision"] == 0.0 and s["recall"] is None and s["f1"] == 0.0


def test_two_spotted_on_one_truth_give_one_tp_and_one_fp():
    g = iv(100, 200)
    spotted = [iv(90, 190), iv(100, 195)]  # IoU 90/110 and 95/100: the second is better
    assert match(spotted, [g]) == [(1, 0, 0.95)]
    c = count(spotted, [g])
    assert (c.tp, c.fp, c.fn) == (1, 1, 0)
    assert c.pairs == [(spotted[1], g, 0.95)]


def test_equal_iou_tie_goes_to_earlier_spotted():
    g = iv(10, 20)
    later, earlier = iv(15, 20), iv(10, 15)  # both IoU 0.5
    assert match([later, earlier], [g]) == [(1, 0, 0.5)]
    assert match([earlier, later], [g]) == [(0, 0, 0.5)]


def test_one_long_spotted_on_two_truths_matches_at_most_once():
    truth = [iv(0, 10), iv(10, 20)]
    # [0, 20] has IoU exactly 0.5 with each
    c = count([iv(0, 20)], truth)
    assert (c.tp, c.fp, c.fn) == (1, 0, 1)
    assert match([iv(0, 20)], truth) == [(0, 0, 0.5)]
    # [0, 22] has IoU 10/22 and 10/22 (< 0.5): no match
    c = count([iv(0, 22)], truth)
    assert (c.tp, c.fp, c.fn) == (0, 1, 2)


def test_greedy_prefers_higher_iou_pair():
    truth = [iv(0, 10), iv(4, 14)]
    spotted = [iv(3, 13), iv(0, 9)]
    # spotted 0: IoU 7/13 with truth 0, 9/11 with truth 1; spotted 1: 9/10 with truth 0, 5/14 with truth 1
    m = match(spotted, truth)
    assert [(i, j) for i, j, _ in m] == [(1, 0), (0, 1)]
    assert math.isclose(m[0][2], 0.9) and math.isclose(m[1][2], 9 / 11)


def test_match_is_sorted_by_truth_index():
    truth = [iv(0, 10), iv(20, 30), iv(40, 50)]
    spotted = [iv(41, 50), iv(0, 10), iv(21, 30)]
    assert [(i, j) for i, j, _ in match(spotted, truth)] == [(1, 0), (2, 1), (0, 2)]


# --- pooling -------------------------------------------------------------------------------------------------


def test_pooling_two_recordings_gives_pooled_not_averaged_f1():
    # Recording A: 1 truth, spotted right: TP 1 (F1 1.0)
    a = count([iv(0, 10)], [iv(0, 10)])
    # Recording B: 3 truths, 1 spotted right, 1 spotted wrong: TP 1, FP 1, FN 2 (F1 2/5)
    b = count([iv(0, 10), iv(50, 60)], [iv(0, 10), iv(20, 30), iv(35, 45)])
    assert spotting_scores(a)["f1"] == 1.0
    assert math.isclose(spotting_scores(b)["f1"], 0.4)
    pooled = a + b
    assert (pooled.tp, pooled.fp, pooled.fn) == (2, 1, 2)
    assert len(pooled.pairs) == 2
    s = spotting_scores(pooled)
    assert math.isclose(s["precision"], 2 / 3)
    assert math.isclose(s["recall"], 2 / 4)
    assert math.isclose(s["f1"], 4 / 7)  # not (1.0 + 0.4) / 2
    assert not math.isclose(s["f1"], 0.7)
    assert sum([a, b]) == pooled
    # The operands are left as they were.
    assert (a.tp, a.fp, a.fn, len(a.pairs)) == (1, 0, 0, 1)


def test_spotting_scores_values():
    s = spotting_scores(SpotCounts(tp=3, fp=1, fn=2))
    assert (s["tp"], s["fp"], s["fn"]) == (3, 1, 2)
    assert s["precision"] == 0.75 and s["recall"] == 0.6
    assert math.isclose(s["f1"], 2 * 0.75 * 0.6 / (0.75 + 0.6))
    s = spotting_scores(SpotCounts(tp=0, fp=4, fn=3))
    assert s["precision"] == 0.0 and s["recall"] == 0.0 and s["f1"] == 0.0


# --- recognition ---------------------------------------------------------------------------------------------


def test_recognition_right_and_wrong_labels():
    truth = [iv(0, 10, "happy"), iv(20, 30, "happy"), iv(40, 50, "surprise"), iv(60, 70, "disgust")]
    spotted = [iv(0, 10, "happy"), iv(20, 30, "surprise"), iv(40, 50, "surprise"), iv(60, 70, None)]
    c = count(spotted, truth)
    assert c.tp == 4
    r = recognition_scores(c)
    assert r["tp"] == 4 and r["correct"] == 2
    assert r["accuracy"] == 0.5
    # happy: tp 1, fn 1 -> 2/3; surprise: tp 1, fp 1 -> 2/3; disgust: fn 1 -> 0
    assert math.isclose(r["macro_f1"], (2 / 3 + 2 / 3 + 0) / 3)
    assert r["spot_then_recognise"] == 0.5


def test_spot_then_recognise_counts_fp_and_fn():
    truth = [iv(0, 10, "a"), iv(20, 30, "b"), iv(40, 50, "a")]
    spotted = [iv(0, 10, "a"), iv(21, 30, "a"), iv(80, 90, "b")]
    c = count(spotted, truth)
    assert (c.tp, c.fp, c.fn) == (2, 1, 1)
    r = recognition_scores(c)
    assert r["correct"] == 1 and r["accuracy"] == 0.5
    assert r["spot_then_recognise"] == 1 / 4
    # a: tp 1, fp 1 -> 2/3; b: fn 1 -> 0
    assert math.isclose(r["macro_f1"], 1 / 3)


def test_recogniser_that_spots_nothing_scores_nothing():
    c = count([], [iv(0, 10, "a"), iv(20, 30, "b")])
    r = recognition_scores(c)
    assert r["correct"] == 0
    assert r["accuracy"] is None and r["macro_f1"] is None
    assert r["spot_then_recognise"] == 0.0
    r = recognition_scores(count([], []))
    assert r["spot_then_recognise"] is None


def test_perfect_recognition():
    truth = [iv(0, 10, "a"), iv(20, 30, "b")]
    r = recognition_scores(count(list(truth), truth))
    assert r["accuracy"] == 1.0 and r["macro_f1"] == 1.0 and r["spot_then_recognise"] == 1.0


def test_recognition_pools_over_recordings():
    a = count([iv(0, 10, "x")], [iv(0, 10, "x")])
    b = count([iv(0, 10, "y"), iv(30, 40, "x")], [iv(0, 10, "x")])
    r = recognition_scores(a + b)
    assert (r["tp"], r["correct"]) == (2, 1)
    assert r["spot_then_recognise"] == 1 / 3


def test_recognition_needs_labelled_truth_and_pairs():
    with pytest.raises(ValueError, match="no label"):
        recognition_scores(count([iv(0, 10, "a")], [iv(0, 10)]))
    with pytest.raises(ValueError, match="pair"):
        recognition_scores(SpotCounts(tp=2, fp=0, fn=0))


def test_segment_accuracy():
    assert segment_accuracy([]) is None
    assert segment_accuracy([("a", "a"), ("b", "a"), ("c", None), ("d", "d")]) == 0.5
    assert segment_accuracy([("a", None)]) == 0.0
    assert segment_accuracy([("a", "a")]) == 1.0


# --- invalid input -------------------------------------------------------------------------------------------


def test_invalid_interval_raises_naming_the_values():
    with pytest.raises(ValueError, match=r"start=5.*end=3"):
        Interval(5, 3)
    with pytest.raises(ValueError, match="finite"):
        Interval(0, float("nan"))
    with pytest.raises(ValueError, match="finite"):
        Interval(float("-inf"), 0)
    assert Interval(2, 2).end == 2


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan")])
def test_invalid_threshold_raises(bad):
    with pytest.raises(ValueError, match="threshold"):
        match([iv(0, 1)], [iv(0, 1)], threshold=bad)
    with pytest.raises(ValueError, match="threshold"):
        count([], [], threshold=bad)


def test_negative_counts_and_mismatched_pairs_raise():
    with pytest.raises(ValueError, match="fp"):
        SpotCounts(tp=0, fp=-1, fn=0)
    p = (iv(0, 1), iv(0, 1), 1.0)
    with pytest.raises(ValueError, match="pairs"):
        SpotCounts(tp=2, fp=0, fn=0, pairs=[p])
