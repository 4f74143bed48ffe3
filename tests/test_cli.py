"""End to end through the command line, asserting on the files it writes."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import cv2
import numpy as np
import pytest

from faceanon_video.cli import main
from tests.conftest import BIKES, DATA, HAMILTON, annotated_boxes, decode_all, far_from_boxes_mask

ANNOTATED = DATA / "images" / "annotated"


def box_change(before: np.ndarray, after: np.ndarray, box) -> float:
    x0, y0, x1, y1 = (int(v) for v in box)
    a = before[y0:y1, x0:x1].astype(np.float32)
    b = after[y0:y1, x0:x1].astype(np.float32)
    return float(np.abs(a - b).mean())


def detail(image: np.ndarray, box) -> float:
    """Variance of the Laplacian inside a box: the high-frequency energy face recognisers rely on."""
    x0, y0, x1, y1 = (max(0, int(v)) for v in box)
    crop = image[y0:y1, x0:x1]
    if crop.size == 0:
        return 0.0
    return float(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var())


@pytest.mark.parametrize("mode", ["blur", "mosaic", "solid"])
def test_every_annotated_face_is_changed_and_background_is_not(tmp_path, mode):
    for name, boxes in annotated_boxes().items():
        out = tmp_path / f"{mode}_{name}.png"  # lossless, so only our changes show
        assert main([str(ANNOTATED / name), "-o", str(out), "--mode", mode, "-q"]) == 0
        before, after = cv2.imread(str(ANNOTATED / name)), cv2.imread(str(out))
        # The central half of every hand-annotated face must be strongly altered: that is where identity is.
        for box in boxes:
            x0, y0, x1, y1 = box
            cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
            core = (cx - w / 4, cy - h / 4, cx + w / 4, cy + h / 4)
            assert box_change(before, after, core) > 6, f"{name}: face {box} not anonymized with {mode}"
        far = far_from_boxes_mask(before.shape, boxes, margin=0.5)
        diff = np.abs(before.astype(int) - after.astype(int)).max(axis=2)
        assert (diff[far] > 8).mean() < 0.02, f"{name}: background damaged"


def test_blur_removes_identity_detail():
    # A blurred face's high-frequency energy (what recognisers use) must drop by an order of magnitude.
    img = cv2.imread(str(DATA / "images" / "astronaut.png"))
    from faceanon_video.anonymize.filters import Blur
    from faceanon_video.detect import build_detector
    from faceanon_video.types import Frame

    faces = build_detector().detect(img)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces.xyxy[0].astype(int)
    before = img[y0:y1, x0:x1].copy()
    after = Blur().apply(Frame(bgr=img.copy(), index=0), faces).bgr[y0:y1, x0:x1]
    box = (0, 0, x1 - x0, y1 - y0)
    assert detail(after, box) < detail(before, box) / 10


def test_video_keeps_frames_timing_audio_and_changes_faces(tmp_path):
    out = tmp_path / "h.mp4"
    assert main([str(HAMILTON), "-o", str(out), "-q", "--end", "3"]) == 0
    src_frames, src_pts = decode_all(HAMILTON)
    out_frames, out_pts = decode_all(out)
    # --end counts from the first frame (pts 10214 here), like ffmpeg -to
    assert out_pts == src_pts[: len(out_pts)] and len(out_pts) == sum(1 for p in src_pts if (p - src_pts[0]) / 11988 <= 3.0)
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1
        assert sum(1 for p in c.demux(audio=0) if p.size) > 50
    # Faces found by the detector in the source must be changed in the output.
    from faceanon_video.detect import build_detector

    detector = build_detector()
    checked = 0
    for i in range(0, len(out_frames), 10):
        for box in detector.detect(src_frames[i]).xyxy:
            before, after = detail(src_frames[i], box), detail(out_frames[i], box)
            if before < 10:
                # Out of focus or in the dark (detail 2-9 here): nothing to remove, and x264's noise in
                # the shadows alone reaches ~5 whether a box is blurred or not.
                continue
            # Identity lives in fine detail: it must be gone (real faces here: 32-2640 -> below 33).
            assert after < 0.6 * before, f"frame {i}: face {box} keeps detail {after:.1f} of {before:.1f}"
            checked += 1
    assert checked >= 8


def test_face_free_footage_passes_nearly_unchanged(tmp_path):
    out = tmp_path / "bikes.mp4"
    # Frames 0-29 of bikes.mp4 have no faces (0.0-1.16 s at 25 fps).
    assert main([str(BIKES), "-o", str(out), "-q", "--end", "1.1", "--crf", "12"]) == 0
    src, _ = decode_all(BIKES)
    dst, _ = decode_all(out)
    assert len(dst) == 28
    for a, b in zip(src, dst):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0  # only compression noise


def test_face_free_footage_reaches_the_encoder_bit_for_bit(tmp_path):
    # Decoded 4:2:0 frames are never converted whole: with lossless x264 (--crf 0) the output
    # decodes to exactly the input's samples.
    out = tmp_path / "bikes.mp4"
    assert main([str(BIKES), "-o", str(out), "-q", "--end", "1.1", "--crf", "0"]) == 0
    with av.open(str(BIKES)) as src, av.open(str(out)) as dst:
        pairs = list(zip((f.to_ndarray() for f in src.decode(video=0)), (f.to_ndarray() for f in dst.decode(video=0))))
    assert len(pairs) == 28 and all(np.array_equal(a, b) for a, b in pairs)


def test_default_output_name_and_no_overwrite(tmp_path):
    src = tmp_path / "clip.mp4"
    src.write_bytes(BIKES.read_bytes())
    assert main([str(src), "-q", "--end", "0.2"]) == 0
    assert (tmp_path / "clip_anonymized.mp4").is_file()
    assert main([str(src), "-q", "--end", "0.2"]) == 2  # exists: refuse
    assert main([str(src), "-q", "--end", "0.2", "--overwrite"]) == 0


def test_folder_input(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert main([str(ANNOTATED), "-o", str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}_anonymized.jpg" for p in ANNOTATED.glob("*.jpg"))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: _write(d / "empty.mp4", b""), "empty"),
        (lambda d: _write(d / "text.mp4", b"hello" * 1000), "not a readable video"),
        (lambda d: _write(d / "cut.mp4", HAMILTON.read_bytes()[:150_000]), "not a readable video|truncated"),
    ],
)
def test_bad_input_one_line_error_no_traceback_no_output(tmp_path, make, message):
    src = make(tmp_path)
    out = tmp_path / "result.mp4"
    proc = subprocess.run([sys.executable, "-m", "faceanon_video.cli", str(src), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    import re

    assert re.search(message, lines[0])
    assert not out.exists()
    assert not any(p.name.startswith(".result") for p in tmp_path.iterdir())


def test_help_and_version():
    proc = subprocess.run([sys.executable, "-m", "faceanon_video.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for option in ("--mode", "--mask", "--mask-scale", "--thresh", "--min-face", "--crf", "--preset"):
        assert option in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "faceanon_video.cli", "--version"], capture_output=True, text=True)
    assert proc.stdout.startswith("faceanon-video ")


def test_a_command_line_value_equal_to_the_default_still_beats_the_run_file(tmp_path):
    # "--mode blur" equals the default, which once let the run file's "mosaic" win.
    run_file, saved = tmp_path / "run.json", tmp_path / "saved.json"
    run_file.write_text(json.dumps({"mode": "mosaic", "min_face_px": 40}))
    code = main([str(tmp_path / "missing.mp4"), "--config", str(run_file), "--mode", "blur", "--save-config", str(saved)])
    assert code != 0  # the input does not exist; the effective settings were saved before that
    assert json.loads(saved.read_text())["mode"] == "blur"
    assert json.loads(saved.read_text())["min_face_px"] == 40  # not given: the run file's


def test_save_plan_with_an_output_or_a_missing_folder_is_refused(tmp_path, capsys):
    # --save-plan encodes nothing: a -o given with it was silently ignored (no video where one was asked for).
    assert main([str(HAMILTON), "--save-plan", str(tmp_path / "p.json"), "-o", str(tmp_path / "out.mp4"), "-q"]) == 2
    assert "-o" in capsys.readouterr().err
    # A path ending in "/" names a folder: it was written as a file called "missing".
    assert main([str(HAMILTON), "--save-plan", str(tmp_path / "missing") + "/", "-q"]) == 2
    assert "missing" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
