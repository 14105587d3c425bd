"""Samples and splits of a training run: one :class:`Sample` per clip and sensor, leave-one-subject-out folds
(:func:`loso_folds`) and the ``takes`` split (:func:`take_split`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from microexp.errors import MicroexpError, ParameterError
from microexp.learn.config import TrainConfig


@dataclass
class Sample:
    clip_id: str
    subject: str
    label: int
    array: str  # array name in the dataset
    peak: int  # movement centre (slice index)
    slices: int
    trial: int = 1  # performance number of the AU by this subject (takes: 1, 2, ...)
    au: str = ""


def samples_for(ds, cfg: TrainConfig) -> list[Sample]:
    """The training/test samples of ``ds`` for ``cfg``: one per clip and event sensor (events), one per clip
    with webcam crops (rgb; the clips of the first sensor of ``cfg.sensors``)."""
    out = []
    for clip in ds.clips:
        if cfg.modality == "events":
            for s in cfg.sensors:
                if s in clip["arrays"]:
                    out.append(
                        Sample(
                            clip["id"],
                            clip["subject"],
                            int(clip["label"]),
                            s,
                            int(clip["sensors"][s]["activity_peak"]),
                            int(clip["slices"]),
                            int(clip.get("trial") or 1),
                            str(clip.get("au", "")),
                        )
                    )
        elif "webcam_rgb" in clip["arrays"] and cfg.sensors[0] in clip["arrays"]:
            out.append(
                Sample(
                    clip["id"],
                    clip["subject"],
                    int(clip["label"]),
                    "webcam_rgb",
                    int(clip["sensors"][cfg.sensors[0]]["activity_peak"]),
                    int(clip["slices"]),
                    int(clip.get("trial") or 1),
                    str(clip.get("au", "")),
                )
            )
    if not out:
        raise MicroexpError(f"the dataset has no clips for modality {cfg.modality!r} and sensor(s) {cfg.sensor!r}")
    return out


def loso_folds(
    samples: Sequence[Sample], only: Optional[Sequence[str]] = None
) -> list[tuple[str, list[int], list[int]]]:
    """Leave-one-subject-out folds ``(test subject, train indices, test indices)``, subjects sorted; ``only``
    restricts to those test subjects (names, or fold numbers as strings)."""
    subjects = sorted({s.subject for s in samples})
    if len(subjects) < 2:
        raise MicroexpError(f"leave-one-subject-out needs at least 2 subjects, the data has {subjects}")
    chosen = subjects
    if only:
        chosen = []
        for item in only:
            if item in subjects:
                chosen.append(item)
            elif item.isdigit() and int(item) < len(subjects):
                chosen.append(subjects[int(item)])
            else:
                raise ParameterError(
                    f"--folds {item!r}: neither a subject ({', '.join(subjects)}) nor a fold 0..{len(subjects) - 1}"
                )
    folds = []
    for subject in chosen:
        test = [i for i, s in enumerate(samples) if s.subject == subject]
        train = [i for i, s in enumerate(samples) if s.subject != subject]
        folds.append((subject, train, test))
    return folds


def take_split(samples: Sequence[Sample]) -> list[tuple[str, list[int], list[int]]]:
    """The ``takes`` protocol: one split ``("takes", train, test)`` that trains on each subject's first
    performance of every AU (its lowest trial number) and tests on the later ones -- the same people, new
    performances. It measures how well a performance is recognised when the person is known; leave-one-subject-
    out cannot do better than that. Needs at least two takes (``synth-dataset --takes 2``, protocol ``takes``)."""
    first: dict = {}
    for s in samples:
        key = (s.subject, s.label, s.array)
        first[key] = min(first.get(key, s.trial), s.trial)
    train = [i for i, s in enumerate(samples) if s.trial == first[(s.subject, s.label, s.array)]]
    test = [i for i, s in enumerate(samples) if s.trial != first[(s.subject, s.label, s.array)]]
    if not test:
        raise MicroexpError(
            "--protocol takes needs two or more takes of an AU per subject; the dataset has one "
            "(record more with `microexp synth-dataset --takes 2` or the protocol's `takes`)"
        )
    return [("takes", train, test)]
