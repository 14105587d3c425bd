"""Event frames for people to look at: decoded events of a time window drawn into an RGB8 image (no ROS).

:class:`EventFrameRenderer` keeps the events of the last ``window_us`` of sensor time (relative to the newest event
it was given) and draws them on a dark background: a pixel whose ON events in the window outnumber its OFF events
shows the ON colour, one with more OFF events the OFF colour, and a pixel with as many of each (at least one) the
mean of the two. Counting instead of "the last event wins" keeps the image independent of the order in which
events of one pixel are written, so a frame is a function of the window's events alone.

On top of the events, :func:`draw_box` draws a rectangle (the face box) and :func:`draw_text` a short label (the AU
the inference node names) in a 3 x 5 pixel bitmap font of its own, scaled by whole pixels: digits, the letters of
``AU``, ``REST``, ``NO FACE`` and a few signs (:data:`GLYPHS`); any other character is drawn as a blank.

Example
-------
>>> from microexp.events.dtype import make_events
>>> r = EventFrameRenderer(8, 4, window_us=1000)
>>> r.add(make_events([1, 2], [0, 3], [100, 200], [1, 0]))
>>> img = r.render()
>>> img.shape, tuple(img[0, 1]) == r.colours.on, tuple(img[3, 2]) == r.colours.off
((4, 8, 3), True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from microexp.errors import ParameterError

__all__ = [
    "Colours",
    "EventFrameRenderer",
    "pixel_states",
    "palette",
    "draw_events",
    "draw_box",
    "draw_text",
    "text_size",
    "GLYPHS",
]

RGB = tuple  # (r, g, b), 0..255 each


def check_colour(value: Sequence[int], what: str = "colour") -> RGB:
    """``value`` as an ``(r, g, b)`` tuple of ints 0..255, else ParameterError naming ``what``."""
    try:
        rgb = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ParameterError(f"{what}: expected three integers 0..255 (r, g, b), got {value!r}") from None
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ParameterError(f"{what}: expected three integers 0..255 (r, g, b), got {value!r}")
    return rgb


@dataclass(frozen=True)
class Colours:
    """The colours of a rendered frame, RGB."""

    on: RGB = (255, 255, 255)
    off: RGB = (40, 120, 255)
    background: RGB = (0, 0, 0)
    overlay: RGB = (0, 255, 0)  #: the face box and the label

    def __post_init__(self):
        for name in ("on", "off", "background", "overlay"):
            object.__setattr__(self, name, check_colour(getattr(self, name), f"{name} colour"))

    @property
    def both(self) -> RGB:
        """The colour of a pixel with as many ON as OFF events: the mean of the two."""
        return tuple((a + b) // 2 for a, b in zip(self.on, self.off))


def pixel_states(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """Per pixel (row-major, ``height * width``, uint8): 0 no event, 1 more ON than OFF events, 2 more OFF than
    ON, 3 as many of each (see the module docstring); events outside the frame are ignored."""
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    code = (y * width + x) * 2 + (events["p"] != 0)
    inside = (x < width) & (y < height)
    if not inside.all():
        code = code[inside]
    counts = np.bincount(code, minlength=2 * width * height).reshape(-1, 2)
    off, on = counts[:, 0], counts[:, 1]
    states = (on > off).view(np.uint8) + 2 * (off > on).view(np.uint8)
    states += 3 * ((on == off) & (on > 0)).view(np.uint8)
    return states


def palette(colours: Colours) -> np.ndarray:
    """The 4 x 3 uint8 colours of the :func:`pixel_states` 0..3."""
    return np.array([colours.background, colours.on, colours.off, colours.both], dtype=np.uint8)


def draw_events(image: np.ndarray, events: np.ndarray, colours: Colours) -> np.ndarray:
    """Draw ``events`` (EVENT_DTYPE) into ``image`` (H x W x 3 uint8, changed in place, returned): the pixels that
    have events take the colour of their majority polarity (see the module docstring); events outside the image
    are ignored; other pixels are left as they are."""
    h, w = image.shape[:2]
    if events.shape[0] == 0:
        return image
    states = pixel_states(events, w, h)
    lit = states > 0
    image.reshape(h * w, 3)[lit] = palette(colours)[states[lit]]
    return image


def draw_box(image: np.ndarray, box: Sequence[float], colour: RGB, thickness: int = 1) -> np.ndarray:
    """Draw the outline of ``box`` ``(x0, y0, x1, y1)`` (pixels, ``x1``/``y1`` exclusive, as
    :mod:`microexp.vision.crop`; edges rounded to whole pixels) ``thickness`` pixels wide inside its edges, clipped
    to ``image`` (changed in place, returned). A box entirely outside the image draws nothing."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(np.floor(float(v) + 0.5)) for v in box)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        return image
    t = max(1, int(thickness))
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    for r0, r1 in ((y0, y0 + t), (y1 - t, y1)):  # top and bottom edges
        r0, r1 = max(r0, cy0), min(r1, cy1)
        if r0 < r1:
            image[r0:r1, cx0:cx1] = colour
    for c0, c1 in ((x0, x0 + t), (x1 - t, x1)):  # left and right edges
        c0, c1 = max(c0, cx0), min(c1, cx1)
        if c0 < c1:
            image[cy0:cy1, c0:c1] = colour
    return image


# A 3 x 5 bitmap font: each glyph is five rows of three columns, "#" = lit.
_FONT = {
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", ".##", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", "..#", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "###"),
    "A": (".#.", "#.#", "###", "#.#", "#.#"),
    "C": (".##", "#..", "#..", "#..", ".##"),
    "E": ("###", "#..", "##.", "#..", "###"),
    "F": ("###", "#..", "##.", "#..", "#.."),
    "N": ("##.", "#.#", "#.#", "#.#", "#.#"),
    "O": (".#.", "#.#", "#.#", "#.#", ".#."),
    "R": ("##.", "#.#", "##.", "#.#", "#.#"),
    "S": (".##", "#..", ".#.", "..#", "##."),
    "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "U": ("#.#", "#.#", "#.#", "#.#", "###"),
    ".": ("...", "...", "...", "...", ".#."),
    "-": ("...", "...", "###", "...", "..."),
    ":": ("...", ".#.", "...", ".#.", "..."),
    " ": ("...", "...", "...", "...", "..."),
}
GLYPHS = {c: np.array([[ch == "#" for ch in row] for row in rows], dtype=bool) for c, rows in _FONT.items()}
"""Character -> 5 x 3 boolean mask of the built-in bitmap font."""
GLYPH_W, GLYPH_H, GLYPH_GAP = 3, 5, 1


def text_size(text: str, scale: int = 1) -> tuple[int, int]:
    """``(width, height)`` in pixels of ``text`` drawn by :func:`draw_text` at ``scale``."""
    n = len(text)
    return (max(0, n * (GLYPH_W + GLYPH_GAP) - GLYPH_GAP) * scale, GLYPH_H * scale if n else 0)


def draw_text(
    image: np.ndarray, text: str, x: int, y: int, colour: RGB, scale: int = 1, background: Optional[RGB] = None
) -> np.ndarray:
    """Draw ``text`` (upper case; see :data:`GLYPHS`) with its top-left corner at ``(x, y)``, each font pixel a
    ``scale`` x ``scale`` square, clipped to ``image`` (changed in place, returned). ``background``: fill the
    text's rectangle (one font pixel of margin) first, so the label stays legible over events."""
    scale = max(1, int(scale))
    text = text.upper()
    w, h = text_size(text, scale)
    if not w:
        return image
    mask = np.zeros((GLYPH_H, len(text) * (GLYPH_W + GLYPH_GAP)), dtype=bool)
    for i, ch in enumerate(text):
        glyph = GLYPHS.get(ch, GLYPHS[" "])
        mask[:, i * (GLYPH_W + GLYPH_GAP) : i * (GLYPH_W + GLYPH_GAP) + GLYPH_W] = glyph
    mask = np.kron(mask, np.ones((scale, scale), dtype=bool))[:h, :w]
    ih, iw = image.shape[:2]
    if background is not None:
        m = scale
        by0, bx0 = max(y - m, 0), max(x - m, 0)
        by1, bx1 = min(y + h + m, ih), min(x + w + m, iw)
        if by0 < by1 and bx0 < bx1:
            image[by0:by1, bx0:bx1] = background
    r0, c0 = max(y, 0), max(x, 0)
    r1, c1 = min(y + h, ih), min(x + w, iw)
    if r0 >= r1 or c0 >= c1:
        return image
    region = image[r0:r1, c0:c1]
    region[mask[r0 - y : r1 - y, c0 - x : c1 - x]] = colour
    return image


class EventFrameRenderer:
    """The events of a sliding window of sensor time, rendered on demand.

    Parameters
    ----------
    width, height:
        Sensor geometry in pixels (events outside it are not drawn).
    window_us:
        Length of the window: a frame shows the events with ``t_end - window_us < t <= t_end``, ``t_end`` being the
        newest event time given to :meth:`add` (or the ``t_end_us`` given to :meth:`render`).
    colours:
        :class:`Colours` of the frame.

    Events given to :meth:`add` that all lie before the current window (a replay that looped, a sensor that
    restarted its clock) start the window afresh (counted in ``resets``): they could not be shown otherwise.
    :meth:`add` keeps only what a later frame can still show, so memory stays bounded by one window of events.
    """

    def __init__(self, width: int, height: int, window_us: int = 33_000, colours: Colours = Colours()):
        if int(width) < 1 or int(height) < 1:
            raise ParameterError(f"renderer: geometry {width} x {height} is not a frame")
        if int(window_us) < 1:
            raise ParameterError(f"renderer: window_us must be >= 1, got {window_us!r}")
        self.width, self.height = int(width), int(height)
        self.window_us = int(window_us)
        self.colours = colours
        self._chunks: list[tuple[int, np.ndarray]] = []  # (newest t of the chunk, events)
        self.latest_us: Optional[int] = None  #: the newest event time seen (None: none since the last reset)
        self.resets = 0  #: times events from before the window started it afresh

    def reset(self) -> None:
        """Forget every event (the next frame is empty)."""
        self._chunks.clear()
        self.latest_us = None

    def add(self, events: np.ndarray) -> None:
        """Add decoded events (EVENT_DTYPE, in time order as a decoder gives them)."""
        if events.shape[0] == 0:
            return
        t_max = int(events["t"].max())
        if self.latest_us is not None and t_max <= self.latest_us - self.window_us:
            self.reset()
            self.resets += 1
        self.latest_us = t_max if self.latest_us is None else max(self.latest_us, t_max)
        self._chunks.append((t_max, events))
        cut = self.latest_us - self.window_us
        self._chunks = [(t, ev) for t, ev in self._chunks if t > cut]

    def window_events(self, t_end_us: Optional[int] = None) -> np.ndarray:
        """The events a frame ending at ``t_end_us`` (default: the newest event) shows."""
        from microexp.events.dtype import concat_events, empty_events, take_events

        t_end = self.latest_us if t_end_us is None else int(t_end_us)
        if t_end is None or not self._chunks:
            return empty_events()
        ev = concat_events([e for _, e in self._chunks])
        t = ev["t"]
        keep = (t > t_end - self.window_us) & (t <= t_end)
        return ev if keep.all() else take_events(ev, keep)

    def render(
        self,
        box: Optional[Sequence[float]] = None,
        label: str = "",
        t_end_us: Optional[int] = None,
        label_scale: int = 0,
    ) -> np.ndarray:
        """A new H x W x 3 uint8 RGB frame of the window ending at ``t_end_us`` (default: the newest event), with
        ``box`` ``(x0, y0, x1, y1)`` outlined and ``label`` written in the top-left corner, both in the overlay
        colour. ``label_scale``: font pixel size (0 = automatic: text about 1/16 of the frame height, font pixels at least 1)."""
        c = self.colours
        states = pixel_states(self.window_events(t_end_us), self.width, self.height)
        image = np.take(palette(c), states, axis=0).reshape(self.height, self.width, 3)
        if box is not None:
            draw_box(image, box, c.overlay, thickness=max(1, self.height // 240))
        if label:
            scale = label_scale or max(1, self.height // (GLYPH_H * 16))
            draw_text(image, label, 2 * scale, 2 * scale, c.overlay, scale, background=c.background)
        return image
