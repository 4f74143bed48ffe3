"""``--spare`` / ``--only`` end to end through the command line, on real footage.

The outputs are encoded losslessly (``--crf 0``) and compared on the luma plane, so "left visible"
means *exactly* the input's pixels in the face, and anything else means the face was painted over.
Who is who is hand-labelled: Lin-Manuel Miranda is the face at ``MIRANDA_BOXES`` in
short_hamilton_clip.mp4 (checked by eye against tests/data/images/identities/lin-manuel-miranda.png);
everyone else there is a stranger, and so is the man in carphone_pristine.mp4.
"""

from __future__ import annotations


import av
import cv2
import numpy as np
import pytest

from faceanon_video.cli import main
from faceanon_video.geometry import box_iou
from faceanon_video.track.tracks_io import read_tracks
from tests.conftest import CARPHONE, DATA, HAMILTON

MIRANDA = DATA / "images" / "identities" / "lin-manuel-miranda.png"
#: frame -> Miranda's face box (xyxy) in short_hamilton_clip.mp4: his two tracks in the first 5 s.
MIRANDA_BOXES = {0: (517, 39, 569, 111), 100: (185, 60, 306, 217)}
MIN_FACE_PX = 40  # the faces the targets of issue 19 count


def _luma(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="yuv420p")[: f.height] for f in container.decode(video=0)]


def _inner(xyxy, shape) -> tuple[slice, slice]:
    """The middle half of a face box: eyes, nose, mouth, away from a neighbour's enlarged mask."""
    x0, y0, x1, y1 = xyxy
    w, h = x1 - x0, y1 - y0
    X0, Y0 = max(0, int(x0 + 0.25 * w)), max(0, int(y0 + 0.25 * h))
    X1, Y1 = min(shape[1], int(x1 - 0.25 * w)), min(shape[0], int(y1 - 0.25 * h))
    return slice(Y0, Y1), slice(X0, X1)


def _faces(source, output, tracks):
    """Per face of the track file: (frame, track id, box, shown = pixels exactly the input's, detail
    left = Laplacian variance of the output over the input's)."""
    before, after = _luma(source), _luma(output)
    assert len(after) == len(read_tracks(tracks)) > 0
    rows = []
    for record in read_tracks(tracks):
        a, b = before[record.frame_index], after[record.frame_index]
        for xyxy, track in zip(record.faces.xyxy, record.faces.track_id.tolist()):
            inner = _inner(xyxy, a.shape)
            if a[inner].size == 0:
                continue
            shown = np.array_equal(a[inner], b[inner])
            detail = cv2.Laplacian(b[inner], cv2.CV_32F).var() / max(cv2.Laplacian(a[inner], cv2.CV_32F).var(), 1e-6)
            rows.append((record.frame_index, track, xyxy, shown, float(detail)))
    return rows


def _miranda_tracks(rows) -> set[int]:
    found = {t for f, t, xyxy, *_ in rows if f in MIRANDA_BOXES and box_iou(np.asarray([xyxy]), np.asarray([MIRANDA_BOXES[f]]))[0, 0] > 0.5}
    assert len(found) == len(MIRANDA_BOXES)  # the tracker keeps his two appearances apart (a shot change between)
    return found


def _his_faces(rows, miranda: set[int]) -> set[tuple[int, int]]:
    """(frame, track) of every face that is his: his tracks', and any box on his face in the same frame
    (IoU > 0.5: the tracker sometimes follows one face with two tracks for a while)."""
    his_box = {f: xyxy for f, t, xyxy, *_ in rows if t in miranda}
    return {(f, t) for f, t, xyxy, *_ in rows if t in miranda or (f in his_box and box_iou(np.asarray([xyxy]), np.asarray([his_box[f]]))[0, 0] > 0.5)}


@pytest.fixture(scope="module", params=["spare", "only"])
def run(request, tmp_path_factory):
    """One CLI run over both clips (the selector's evidence must not carry from one to the other)."""
    out = tmp_path_factory.mktemp(request.param)
    code = main([str(HAMILTON), str(CARPHONE), "-o", str(out), "--save-tracks", str(out), "--crf", "0", "--end", "5", "-q", f"--{request.param}", str(MIRANDA)])
    assert code == 0
    hamilton = _faces(HAMILTON, out / "short_hamilton_clip_anonymized.mp4", out / "short_hamilton_clip.tracks.jsonl")
    carphone = _faces(CARPHONE, out / "carphone_pristine_anonymized.mp4", out / "carphone_pristine.tracks.jsonl")
    return request.param, hamilton, carphone


def test_spare_shows_exactly_the_listed_person_and_only_shows_everyone_else(run):
    mode, hamilton, carphone = run
    miranda = _miranda_tracks(hamilton)  # the track file still lists the faces left visible
    mine = _his_faces(hamilton, miranda)
    his = [r for r in hamilton if (r[0], r[1]) in mine]
    others = [r for r in hamilton if (r[0], r[1]) not in mine] + carphone
    if mode == "spare":
        assert not any(r[3] for r in others)  # no stranger's face kept, ever
        # Issue 19's target: shown on >= 90 % of his frames with faces >= 40 px. Frames are held back
        # (processor.SPARE_LOOKAHEAD), so a track confirmed on its first checks is shown from its start.
        # Measured 80 of his 88 frames (37 before the look-ahead and the keep threshold).
        his_frames = {r[0] for r in his if r[1] in miranda and r[2][3] - r[2][1] >= MIN_FACE_PX}
        shown_frames = {r[0] for r in his if r[1] in miranda and r[3]}
        assert len(his_frames) >= 80 and len(shown_frames & his_frames) >= 0.9 * len(his_frames), (len(shown_frames & his_frames), len(his_frames))
        hidden = others
    else:
        assert not any(r[3] for r in his)  # the listed person is never left visible
        assert sum(r[3] for r in carphone) >= 0.9 * len(carphone)  # a clear stranger is, once confirmed
        hidden = his
    # Every face not left visible is anonymized: its pixels changed and its detail gone.
    big = [r for r in hidden if r[2][3] - r[2][1] >= MIN_FACE_PX and not r[3]]
    assert big and np.median([r[4] for r in big]) < 0.3
    assert all(not r[3] for r in hidden if r[2][3] - r[2][1] >= MIN_FACE_PX)


@pytest.mark.parametrize("photo", ["missing", "no_face"])
def test_a_bad_reference_photo_fails_in_one_line_before_any_output(tmp_path, capsys, photo):
    path = tmp_path / "ref.png"
    if photo == "no_face":
        cv2.imwrite(str(path), np.full((160, 160, 3), 128, np.uint8))
    out = tmp_path / "out.mp4"
    assert main([str(CARPHONE), "-o", str(out), "--spare", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]
    assert list(tmp_path.iterdir()) == ([path] if photo == "no_face" else [])


def test_spare_and_only_together_are_refused(tmp_path, capsys):
    assert main([str(CARPHONE), "-o", str(tmp_path / "out.mp4"), "--spare", str(MIRANDA), "--only", str(MIRANDA)]) == 2
    assert "either --spare or --only" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
