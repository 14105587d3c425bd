"""The 21 facial Action Units (FACS) that microexp classifies, in the order of the paper's Table 1.

The order is the class order of every model output: class index ``i`` is ``AU_CODES[i]``.

Example
-------
>>> au_index("AU12"), au_index("au 12"), au_index("12"), au_index(12)
(5, 5, 5, 5)
>>> au_label(5), AU_NAMES[5]
('AU12', 'Lip Corner Puller')
"""

from __future__ import annotations

import re
from typing import Union

from microexp.errors import ParameterError

_TABLE: tuple[tuple[int, str], ...] = (
    (2, "Outer Brow Raiser"),
    (4, "Brow Lowerer"),
    (5, "Upper Lid Raiser"),
    (6, "Cheek Raiser"),
    (9, "Nose Wrinkler"),
    (12, "Lip Corner Puller"),
    (15, "Lip Corner Depressor"),
    (17, "Chin Raiser"),
    (23, "Lip Tightener"),
    (26, "Jaw Drop"),
    (41, "Lid Droop"),
    (43, "Eyes Closed"),
    (45, "Blink"),
    (51, "Head Turn Left"),
    (52, "Head Turn Right"),
    (53, "Head Up"),
    (54, "Head Down"),
    (61, "Eyes Turn Left"),
    (62, "Eyes Turn Right"),
    (63, "Eyes Up"),
    (64, "Eyes Down"),
)

#: FACS numbers of the classes, in class-index order: (2, 4, 5, ..., 64).
AU_CODES: tuple[int, ...] = tuple(code for code, _ in _TABLE)
#: Class labels as written in files and messages: ("AU2", "AU4", ..., "AU64").
AU_LABELS: tuple[str, ...] = tuple(f"AU{code}" for code in AU_CODES)
#: FACS descriptions, in class-index order: ("Outer Brow Raiser", ...).
AU_NAMES: tuple[str, ...] = tuple(name for _, name in _TABLE)
NUM_CLASSES: int = len(AU_CODES)

_INDEX_OF_CODE = {code: i for i, code in enumerate(AU_CODES)}
_LABEL_PATTERN = re.compile(r"^\s*(?:au)?\s*(\d+)\s*$", re.IGNORECASE)


def au_index(au: Union[str, int]) -> int:
    """Class index of an Action Unit.

    Parameters
    ----------
    au:
        The AU as a label ("AU12", "au12", "AU 12"), a bare number ("12") or an int FACS number (12).
        An int is always read as the FACS number, never as a class index.

    Raises
    ------
    ParameterError
        When the value names none of the 21 AUs; the message lists the valid ones.
    """
    if isinstance(au, bool):
        code = None
    elif isinstance(au, int):
        code = au
    else:
        match = _LABEL_PATTERN.match(str(au))
        code = int(match.group(1)) if match else None
    if code not in _INDEX_OF_CODE:
        raise ParameterError(f"unknown action unit {au!r}; expected one of {', '.join(AU_LABELS)}")
    return _INDEX_OF_CODE[code]


def au_label(index: int) -> str:
    """Label ("AU12") of class ``index`` (0..20)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < NUM_CLASSES:
        raise ParameterError(f"AU class index must be an int in [0, {NUM_CLASSES - 1}], got {index!r}")
    return AU_LABELS[index]


def au_name(au: Union[str, int]) -> str:
    """FACS description of an AU given as anything :func:`au_index` accepts ("AU12" -> "Lip Corner Puller")."""
    return AU_NAMES[au_index(au)]
