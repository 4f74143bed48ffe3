"""failures.FailureWatch: the error that stops a run is shown as it was raised."""

from __future__ import annotations

import pytest

from faceanon_video.errors import ModelError
from faceanon_video.failures import FailureWatch


def test_stop_message_quotes_the_real_error_not_its_grouping_key():
    watch = FailureWatch(early_frames=3)
    error = ModelError("bundled model face_recognition_sface_2021dec_int8bq.onnx is corrupted (sha256 83aecf6a..., expected fb143eea...)")
    watch.record(error)
    watch.record(error)
    with pytest.raises(ModelError) as caught:
        watch.record(error)
    message = str(caught.value)
    assert message.startswith("3 of 3 frames failed the same way")
    assert "face_recognition_sface_2021dec_int8bq.onnx" in message and "83aecf6a" in message


def test_errors_differing_only_in_numbers_count_as_one_kind():
    watch = FailureWatch(early_frames=100, final_fraction=0.5)
    for index in range(3):
        watch.record(RuntimeError(f"frame {index}: bad shape (1, {index + 3})"))
    watch.record(None)
    with pytest.raises(ModelError, match=r"3 of 4 frames failed the same way.*RuntimeError: frame 0: bad shape \(1, 3\)"):
        watch.check_final()
