"""sensor_msgs/Image conversion: the core's cv_bridge equivalent, and cv_bridge itself where installed."""

import numpy as np
import pytest
from sensor_msgs.msg import Image

from microexp.errors import FormatError, ParameterError
from microexp.vision.image import fill_image, image_array


@pytest.mark.parametrize(
    "encoding,shape,dtype",
    [
        ("mono8", (5, 7), np.uint8),
        ("bgr8", (4, 6, 3), np.uint8),
        ("rgb8", (3, 3, 3), np.uint8),
        ("mono16", (2, 9), np.uint16),
    ],
)
def test_round_trip(encoding, shape, dtype):
    a = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    msg = fill_image(Image(), a, encoding)
    assert (msg.height, msg.width, msg.encoding) == (shape[0], shape[1], encoding)
    assert msg.step == shape[1] * (shape[2] if len(shape) == 3 else 1) * np.dtype(dtype).itemsize
    assert np.array_equal(image_array(msg), a)


def test_padded_rows_are_cut():
    msg = Image(height=2, width=3, encoding="mono8", step=4)
    msg.data = bytes([1, 2, 3, 99, 4, 5, 6, 99])
    assert image_array(msg).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_bad_images():
    with pytest.raises(ParameterError, match="3 channels"):
        fill_image(Image(), np.zeros((2, 2), np.uint8), "bgr8")
    with pytest.raises(ParameterError, match="not supported"):
        fill_image(Image(), np.zeros((2, 2), np.uint8), "yuv422")
    short = Image(height=4, width=4, encoding="mono8", step=4)
    short.data = bytes(8)
    with pytest.raises(FormatError, match="8 bytes"):
        image_array(short)


def test_node_conversion_matches_cv_bridge_where_installed():
    from microexp.ros import images

    a = np.random.default_rng(1).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    ours = fill_image(Image(), a, "bgr8")
    msg = images.to_msg(a, "bgr8")
    assert (msg.height, msg.width, msg.step, bytes(msg.data)) == (ours.height, ours.width, ours.step, bytes(ours.data))
    assert np.array_equal(images.from_msg(msg), a)
    if images.BACKEND != "cv_bridge":
        pytest.skip(f"cv_bridge is not installed here (the pip install); images use {images.BACKEND}")
