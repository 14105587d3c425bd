"""Scores for micro-expression spotting and spot-then-recognise (standard library only, no rclpy).

Protocol (MEGC long-video spotting, and the spot-then-recognise task of MEGC 2023):

* Ground truth is a list of intervals ``[onset, offset]``, one per facial movement; a system outputs a list of
  spotted intervals. Both are :class:`Interval` in one unit per call (frames, seconds or nanoseconds). An
  interval here is continuous: its length is ``end - start``. Callers that hold inclusive frame indices
  (frames ``onset..offset``) pass ``Interval(onset, offset + 1)``. Integer units (frames, ns) give exact IoUs;
  nanoseconds since the epoch as float do not (a float holds integers exactly only up to 2**53).
* A spotted interval W is a true positive (TP) for a ground-truth interval G when
  ``IoU(W, G) = |W ∩ G| / |W ∪ G| >= threshold`` (0.5 by default). Each G is matched at most once and each W
  at most once (:func:`match`). Every unmatched W is a false positive (FP), every unmatched G a false
  negative (FN).
* Matching is greedy: all pairs with IoU >= threshold are taken in order of IoU descending; ties go to the
  spotted interval that starts earlier (then the lower spotted index), then to the ground-truth interval that
  starts earlier (then the lower truth index); a pair is kept when neither of its intervals is matched yet.
  With threshold > 0.5, non-overlapping ground truth and non-overlapping spotted intervals, every interval
  has at most one candidate, so the matching is the only one possible; the order only decides among
  overlapping or exactly-0.5 candidates.
* Counts are pooled over the whole data set: TP, FP and FN are summed over recordings (``SpotCounts`` add up
  with ``+`` or ``sum``) and the scores computed once from the sums, never averaged per recording.

:func:`spotting_scores` gives precision = TP/(TP+FP), recall = TP/(TP+FN) and F1 = 2·TP/(2·TP+FP+FN), which
equals 2PR/(P+R) wherever P and R are defined and P+R > 0, and is 0.0 when something was spotted or missed
but nothing matched. A figure whose denominator is 0 is None: precision when nothing was spotted, recall
when there is no ground truth, and all three when there is neither.

:func:`recognition_scores` scores the labels of the TP pairs (spot-then-recognise). A pair is correct when
the spotted label is not None and equals the ground-truth label. It gives accuracy = correct/TP, the macro
F1 over the labels present among the TP pairs (ground-truth labels and non-None spotted labels), and
``spot_then_recognise = correct / (TP + FP + FN)``: a movement counts only when it was both spotted and
labelled correctly, and every FP and FN counts against it, so a system that spots nothing (or spots only
wrong intervals) scores 0.0. Accuracy and macro F1 are None when there is no TP; spot_then_recognise is
None only when TP+FP+FN = 0.

:func:`segment_accuracy` scores recognition on given segments: ``(true_label, predicted_label_or_None)``
pairs, correct/n, where None counts as wrong.

Nothing is rounded here; callers round for display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence


@dataclass(frozen=True)
class Interval:
    """A time interval ``[start, end]`` with an optional class label and confidence score.

    The unit is the caller's (frames, seconds, ns) and must be the same for all intervals of one call.
    ``score`` is carried for the caller's use; matching does not look at it.
    """

    start: float
    end: float
    label: Optional[str] = None
    score: Optional[float] = None

    def __post_init__(self):
        # Reject NaN and infinities: they make IoU undefined.
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise ValueError(f"Interval start and end must be finite (got start={self.start}, end={self.end})")
        if self.end < self.start:
            raise ValueError(f"Interval end must be >= start (got start={self.start}, end={self.end})")

    @property
    def length(self) -> float:
        return self.end - self.start


def iou(a: Interval, b: Interval) -> float:
    """Intersection over union of two intervals.

    0.0 for disjoint or touching intervals (their intersection has length 0). Two zero-length intervals
    give 1.0 when they are the same point, else 0.0; a zero-length interval against a longer one gives 0.0.
    """
    inter = max(0, min(a.end, b.end) - max(a.start, b.start))
    union = a.length + b.length - inter
    if union == 0:
        # Both intervals are points.
        return 1.0 if a.start == b.start else 0.0
    return inter / union


def _check_threshold(threshold: float) -> None:
    # "not (0 < t <= 1)" also rejects NaN.
    if not (0 < threshold <= 1):
        raise ValueError(f"threshold must be in (0, 1] (got threshold={threshold})")


def match(
    spotted: Sequence[Interval], truth: Sequence[Interval], threshold: float = 0.5
) -> list[tuple[int, int, float]]:
    """One-to-one matching of spotted to ground-truth intervals with IoU >= ``threshold``.

    Greedy over the candidate pairs in order of IoU descending; ties go to the spotted interval with the
    earlier start (then lower index), then to the truth interval with the earlier start (then lower index).
    Returns ``(spotted index, truth index, iou)`` for each matched pair, sorted by truth index.
    """
    _check_threshold(threshold)
    # Every pair that clears the threshold is a candidate.
    candidates = []
    for i, w in enumerate(spotted):
        for j, g in enumerate(truth):
            v = iou(w, g)
            if v >= threshold:
                candidates.append((-v, w.start, i, g.start, j, v))
    candidates.sort()
    used_spotted: set[int] = set()
    used_truth: set[int] = set()
    pairs = []
    # Keep a pair when neither side is taken by a pair of higher IoU (or an earlier tie).
    for _, _, i, _, j, v in candidates:
        if i in used_spotted or j in used_truth:
            continue
        used_spotted.add(i)
        used_truth.add(j)
        pairs.append((i, j, v))
    pairs.sort(key=lambda p: p[1])
    return pairs


@dataclass
class SpotCounts:
    """TP, FP and FN of one recording or of many pooled, with the TP pairs ``(spotted, truth, iou)``.

    ``a + b`` (and ``sum([...])``) pools recordings: counts add and pairs concatenate. ``pairs`` may be left
    empty when only :func:`spotting_scores` is needed; :func:`recognition_scores` needs one pair per TP.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    pairs: list[tuple[Interval, Interval, float]] = field(default_factory=list)

    def __post_init__(self):
        for name in ("tp", "fp", "fn"):
            if getattr(self, name) < 0:
                raise ValueError(f"SpotCounts.{name} must be >= 0 (got {getattr(self, name)})")
        if self.pairs and len(self.pairs) != self.tp:
            raise ValueError(f"SpotCounts has {len(self.pairs)} pairs for tp={self.tp}")

    def __add__(self, other: SpotCounts) -> SpotCounts:
        if not isinstance(other, SpotCounts):
            return NotImplemented
        return SpotCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.pairs + other.pairs)

    def __radd__(self, other):
        # sum() starts from 0.
        if other == 0:
            return SpotCounts(self.tp, self.fp, self.fn, list(self.pairs))
        return NotImplemented


def count(spotted: Sequence[Interval], truth: Sequence[Interval], threshold: float = 0.5) -> SpotCounts:
    """TP, FP, FN and the TP pairs of one recording (see :func:`match`)."""
    matched = match(spotted, truth, threshold)
    tp = len(matched)
    return SpotCounts(
        tp=tp,
        fp=len(spotted) - tp,
        fn=len(truth) - tp,
        pairs=[(spotted[i], truth[j], v) for i, j, v in matched],
    )


def _ratio(num: float, den: float) -> Optional[float]:
    return num / den if den else None


def spotting_scores(counts: SpotCounts) -> dict:
    """``{"tp", "fp", "fn", "precision", "recall", "f1"}`` of pooled counts.

    precision = TP/(TP+FP) (None when nothing was spotted), recall = TP/(TP+FN) (None when there is no
    ground truth), F1 = 2·TP/(2·TP+FP+FN) (None when TP+FP+FN = 0).
    """
    tp, fp, fn = counts.tp, counts.fp, counts.fn
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def recognition_scores(counts: SpotCounts) -> dict:
    """``{"tp", "correct", "accuracy", "macro_f1", "spot_then_recognise"}`` over the TP pairs of ``counts``.

    correct: TP pairs whose spotted label is not None and equals the ground-truth label.
    accuracy = correct/TP (None when TP = 0).
    macro_f1: mean over the labels present among the TP pairs (ground-truth labels and non-None spotted
    labels) of 2·tp_l/(2·tp_l+fp_l+fn_l), where for label l tp_l counts pairs with truth l and prediction l,
    fp_l pairs predicted l with another truth, fn_l pairs with truth l and another (or no) prediction
    (None when TP = 0).
    spot_then_recognise = correct/(TP+FP+FN) (None when TP+FP+FN = 0).
    Raises ValueError when the pairs do not match TP or a ground-truth interval of a pair has no label.
    """
    if len(counts.pairs) != counts.tp:
        raise ValueError(f"recognition_scores needs one pair per TP (got {len(counts.pairs)} pairs, tp={counts.tp})")
    labelled = []
    for w, g, _ in counts.pairs:
        if g.label is None:
            raise ValueError(f"ground-truth interval [{g.start}, {g.end}] has no label")
        labelled.append((g.label, w.label))
    correct = sum(1 for t, p in labelled if p is not None and p == t)
    # Per-label one-vs-rest counts over the TP pairs.
    labels = {t for t, _ in labelled} | {p for _, p in labelled if p is not None}
    f1s = []
    for lab in sorted(labels):
        tp_l = sum(1 for t, p in labelled if t == lab and p == lab)
        fp_l = sum(1 for t, p in labelled if t != lab and p == lab)
        fn_l = sum(1 for t, p in labelled if t == lab and p != lab)
        f1s.append(2 * tp_l / (2 * tp_l + fp_l + fn_l))
    return {
        "tp": counts.tp,
        "correct": correct,
        "accuracy": _ratio(correct, counts.tp),
        "macro_f1": sum(f1s) / len(f1s) if f1s else None,
        "spot_then_recognise": _ratio(correct, counts.tp + counts.fp + counts.fn),
    }


def segment_accuracy(pairs: Sequence[tuple[str, Optional[str]]]) -> Optional[float]:
    """Fraction of ``(true_label, predicted_label_or_None)`` pairs with prediction == truth; None counts as
    wrong; None for no pairs."""
    if not pairs:
        return None
    correct = sum(1 for t, p in pairs if p is not None and p == t)
    return correct / len(pairs)
