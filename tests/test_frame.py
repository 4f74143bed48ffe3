"""Frame: I420 frames (decoded video) are read and filtered without converting them whole, and what
is written is never lost."""

import cv2
import numpy as np
import pytest

from faceanon_video.anonymize.filters import Blur, Mosaic, ReplaceImage, Solid
from faceanon_video.types import Detections, Frame


def picture(height=360, width=642, seed=0):
    """A smooth random BGR picture (so 4:2:0 subsampling loses little) and its I420 form."""
    rng = np.random.default_rng(seed)
    bgr = cv2.GaussianBlur((rng.random((height, width, 3)) * 255).astype(np.uint8), (0, 0), 2)
    return bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)


def test_i420_frame_is_read_in_bgr_without_being_converted_whole():
    _, i420 = picture()
    frame = Frame(i420=i420.copy(), index=4)
    reference = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)  # 642 wide: not a multiple of 128 (padded path)
    assert frame.shape == (360, 642, 3) and frame.is_i420
    assert np.array_equal(frame.read_bgr(), reference)
    # Odd edges: the even-aligned block is converted, then trimmed.
    assert np.array_equal(frame.crop_bgr(3, 5, 201, 133), reference[5:133, 3:201])
    assert np.array_equal(frame.crop_bgr(-10, -10, 9999, 9999), reference)
    assert frame.crop_bgr(10, 10, 10, 20).shape == (10, 0, 3)
    small = frame.resized_bgr(320, 180)
    assert small.shape == (180, 320, 3)
    # Chroma is scaled at half size: close to, not equal to, scaling the BGR picture.
    assert np.abs(small.astype(int) - cv2.resize(reference, (320, 180)).astype(int)).mean() < 4
    assert frame.is_i420 and np.array_equal(frame.i420, i420)  # nothing above changed the frame


def test_writes_through_bgr_are_never_lost():
    _, i420 = picture()
    frame = Frame(i420=i420.copy(), index=0)
    frame.bgr[:50] = 0  # switches the frame to BGR; the encoder then reads the written pixels
    assert not frame.is_i420
    y = frame.read_i420()[:360]
    assert y[:50].max() == 16 and y[60:].min() > 16  # BT.601 black is Y=16
    with pytest.raises(ValueError):
        Frame(i420=np.zeros((10, 7), np.uint8))  # odd width: not 4:2:0
    with pytest.raises(ValueError):
        Frame()


FACES = Detections(xyxy=[[101, 51, 181, 151], [401, 201, 442, 251]], score=[1, 1])


@pytest.mark.parametrize("anonymizer", [Blur(), Mosaic(), Solid(color_bgr=(0, 200, 0)), "image"], ids=["blur", "mosaic", "solid", "image"])
def test_filters_on_i420_frames_match_bgr_and_leave_everything_else_bit_exact(anonymizer, tmp_path):
    if anonymizer == "image":
        logo = np.zeros((40, 40, 3), np.uint8)
        logo[:, :20] = (255, 0, 0)
        cv2.imwrite(str(tmp_path / "logo.png"), logo)
        anonymizer = ReplaceImage(str(tmp_path / "logo.png"))
    bgr, i420 = picture()
    as_decoded = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    via_bgr = anonymizer.apply(Frame(bgr=as_decoded.copy()), FACES).bgr.astype(int)
    frame = anonymizer.apply(Frame(i420=i420.copy()), FACES)
    assert frame.is_i420  # filtered plane by plane, never converted whole
    out = frame.read_bgr().astype(int)
    inside = (slice(80, 120), slice(125, 155))
    assert np.abs(out[inside] - as_decoded[inside]).mean() > 5  # the face changed
    assert np.abs(out[inside] - via_bgr[inside]).mean() < 4  # as in BGR (the box edges are even-aligned)
    # Outside the (even-aligned) grown boxes every Y, U and V sample is untouched.
    touched = np.zeros((360, 642), bool)
    for x0, y0, x1, y1 in ((74, 34, 210, 168), (386, 186, 458, 268)):
        touched[y0:y1, x0:x1] = True
    y, u, v = frame.planes()
    original = Frame(i420=i420).planes()
    assert np.array_equal(y[~touched], original[0][~touched])
    assert np.array_equal(u[~touched[::2, ::2]], original[1][~touched[::2, ::2]])
    assert np.array_equal(v[~touched[::2, ::2]], original[2][~touched[::2, ::2]])
