"""The event frame renderer (microexp.vision.render_events, no ROS): ON/OFF colours at the events' pixels, the
window that slides with the newest event, the face box and the bitmap label."""

import numpy as np
import pytest

from microexp.errors import ParameterError
from microexp.events.dtype import make_events
from microexp.vision.render_events import (
    GLYPHS,
    Colours,
    EventFrameRenderer,
    draw_box,
    draw_events,
    draw_text,
    text_size,
)

C = Colours(on=(250, 10, 10), off=(10, 10, 250), background=(5, 5, 5), overlay=(0, 255, 0))


def colour_at(img, x, y):
    return tuple(int(v) for v in img[y, x])


def random_events(n, width, height, t0=0, t1=100_000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0, t1, n))
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))


def expected_frame(events, width, height, colours=C):
    """The rule, pixel by pixel in plain Python: majority polarity, ties (at least one each) the mean colour."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = colours.background
    counts = {}
    for e in events:
        on, off = counts.get((int(e["x"]), int(e["y"])), (0, 0))
        counts[(int(e["x"]), int(e["y"]))] = (on + int(e["p"] == 1), off + int(e["p"] == 0))
    for (x, y), (on, off) in counts.items():
        if x < width and y < height:
            img[y, x] = colours.on if on > off else colours.off if off > on else colours.both
    return img


def test_on_and_off_events_take_their_colours_and_other_pixels_stay_dark():
    r = EventFrameRenderer(10, 6, window_us=1000, colours=C)
    r.add(make_events([1, 4, 7, 7, 2, 2], [0, 5, 3, 3, 2, 2], [10, 20, 30, 40, 50, 60], [1, 0, 1, 1, 1, 0]))
    img = r.render()
    assert img.shape == (6, 10, 3) and img.dtype == np.uint8
    assert colour_at(img, 1, 0) == C.on and colour_at(img, 4, 5) == C.off and colour_at(img, 7, 3) == C.on
    assert colour_at(img, 2, 2) == C.both == (130, 10, 130)  # one ON and one OFF
    lit = {(1, 0), (4, 5), (7, 3), (2, 2)}
    dark = [(x, y) for y in range(6) for x in range(10) if (x, y) not in lit]
    assert all(colour_at(img, x, y) == C.background for x, y in dark)


def test_a_pixel_shows_its_majority_polarity_whatever_the_order():
    ev = make_events([3, 3, 3], [1, 1, 1], [1, 2, 3], [0, 1, 0])
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2]):
        img = draw_events(np.zeros((4, 5, 3), np.uint8), ev[order], C)
        assert colour_at(img, 3, 1) == C.off


def test_random_events_equal_the_rule_pixel_by_pixel():
    ev = random_events(5000, 64, 48, seed=3)
    r = EventFrameRenderer(64, 48, window_us=200_000, colours=C)
    r.add(ev)
    np.testing.assert_array_equal(r.render(), expected_frame(ev, 64, 48))


def test_events_outside_the_frame_are_ignored():
    img = draw_events(np.zeros((4, 4, 3), np.uint8), make_events([9, 1], [1, 9], [1, 2], [1, 1]), C)
    assert not img.any()


def test_the_window_accumulates_packets_and_slides_with_the_newest_event():
    ev = random_events(3000, 32, 24, t0=0, t1=100_000, seed=1)
    r = EventFrameRenderer(32, 24, window_us=33_000, colours=C)
    for chunk in np.array_split(ev, 10):  # packets, as a decoder hands them over
        r.add(chunk)
    newest = int(ev["t"][-1])
    in_window = ev[ev["t"] > newest - 33_000]
    np.testing.assert_array_equal(r.window_events(), in_window)
    np.testing.assert_array_equal(r.render(), expected_frame(in_window, 32, 24))
    # an earlier end: the window ending there, of what is kept
    earlier = r.window_events(newest - 10_000)["t"]
    assert earlier.size and earlier.min() > newest - 43_000 and earlier.max() <= newest - 10_000
    # a later packet moves the window on: the old events leave the frame, and memory
    late = make_events([5], [5], [newest + 50_000], [0])
    r.add(late)
    np.testing.assert_array_equal(r.window_events(), late)
    assert sum(e.shape[0] for _, e in r._chunks) == 1
    img = r.render()
    assert colour_at(img, 5, 5) == C.off and (img != C.background).any(axis=2).sum() == 1


def test_reset_and_time_going_back_start_the_window_afresh():
    r = EventFrameRenderer(8, 8, window_us=10_000, colours=C)
    r.add(make_events([1], [1], [5_000_000], [1]))
    r.reset()
    assert r.latest_us is None and not (r.render() != C.background).any()
    r.add(make_events([1], [1], [5_000_000], [1]))
    r.add(make_events([2], [2], [4_990_000], [0]))  # a replay that looped: back by a window or more
    assert r.resets == 1 and r.latest_us == 4_990_000
    img = r.render()
    assert colour_at(img, 2, 2) == C.off and colour_at(img, 1, 1) == C.background
    r.add(make_events([3], [3], [4_980_001], [1]))  # late events inside the window are kept, not a restart
    assert r.resets == 1 and colour_at(r.render(), 3, 3) == C.on and colour_at(r.render(), 2, 2) == C.off


def test_box_is_outlined_where_asked_and_clipped_to_the_frame():
    img = draw_box(np.zeros((20, 30, 3), np.uint8), (5, 4, 15, 12), (0, 255, 0))
    lit = (img == (0, 255, 0)).all(axis=2)
    ys, xs = np.nonzero(lit)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (5, 14, 4, 11)
    assert lit[4, 5:15].all() and lit[11, 5:15].all() and lit[4:12, 5].all() and lit[4:12, 14].all()
    assert not lit[5:11, 6:14].any() and lit.sum() == 2 * 10 + 2 * 6
    # partly outside: the visible edges only, no wrap-around
    img = draw_box(np.zeros((10, 10, 3), np.uint8), (-5, 3, 4.4, 30), (0, 255, 0))
    lit = (img == (0, 255, 0)).all(axis=2)
    assert lit[3, 0:4].all() and lit[3:10, 3].all() and lit.sum() == 4 + 6
    assert not draw_box(np.zeros((10, 10, 3), np.uint8), (20, 20, 30, 30), (0, 255, 0)).any()


def test_render_draws_the_box_and_the_label_over_the_events():
    r = EventFrameRenderer(120, 80, window_us=1000, colours=C)
    r.add(make_events([60], [40], [10], [1]))
    img = r.render(box=(50, 30, 70, 50), label="AU12 0.87", label_scale=2)
    assert colour_at(img, 60, 40) == C.on
    assert colour_at(img, 50, 30) == C.overlay and colour_at(img, 69, 49) == C.overlay
    w, h = text_size("AU12 0.87", 2)
    assert (w, h) == ((9 * 4 - 1) * 2, 10)
    label = (img[:30, :] == C.overlay).all(axis=2)
    ys, xs = np.nonzero(label)
    assert ys.min() >= 4 and ys.max() < 4 + h and xs.min() >= 4 and xs.max() < 4 + w


def test_the_bitmap_font_writes_each_glyph():
    img = draw_text(np.zeros((7, 40, 3), np.uint8), "AU4", 1, 1, (255, 255, 0))
    lit = (img == (255, 255, 0)).all(axis=2)
    np.testing.assert_array_equal(lit[1:6, 1:4], GLYPHS["A"])
    np.testing.assert_array_equal(lit[1:6, 5:8], GLYPHS["U"])
    np.testing.assert_array_equal(lit[1:6, 9:12], GLYPHS["4"])
    assert lit.sum() == GLYPHS["A"].sum() + GLYPHS["U"].sum() + GLYPHS["4"].sum()
    # scaled: each font pixel a 3 x 3 square; an unknown character is a blank; clipped at the border
    big = (draw_text(np.zeros((15, 12, 3), np.uint8), "1", 0, 0, (9, 9, 9), scale=3) == 9).all(axis=2)
    np.testing.assert_array_equal(big[:, :9], np.kron(GLYPHS["1"], np.ones((3, 3), bool)))
    assert not draw_text(np.zeros((5, 5, 3), np.uint8), "?", 0, 0, (9, 9, 9)).any()
    draw_text(np.zeros((3, 3, 3), np.uint8), "AU12", -2, -2, (9, 9, 9), scale=2)
    assert all(c in GLYPHS for c in "0123456789AU RESTNOFC.")


def test_colours_and_geometry_are_checked():
    with pytest.raises(ParameterError, match="on colour"):
        Colours(on=(256, 0, 0))
    with pytest.raises(ParameterError, match="off colour"):
        Colours(off=(1, 2))
    with pytest.raises(ParameterError, match="geometry"):
        EventFrameRenderer(0, 10)
