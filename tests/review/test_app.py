"""The review routes through Flask's test client: the token, frames and preview pixels, edits, save."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from faceanon_video.io.decode import VideoReader
from faceanon_video.plan import Plan

flask = pytest.importorskip("flask")  # the review extra
from faceanon_video.review.app import create_app
from tests.review.conftest import CARPHONE, FACE_XYXY, SECOND_XYXY

TOKEN = "t0ken-for-tests"


@pytest.fixture
def client(session):
    return create_app(session, TOKEN).test_client()


def get(client, path, **params):
    return client.get(path, query_string={"token": TOKEN, **params})


def post(client, path, body=None):
    return client.post(path, query_string={"token": TOKEN}, json=body if body is not None else {})


def decode_jpeg(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.parametrize("path", ["/", "/api/state", "/frame/3.jpg", "/static/review.js", "/thumb/1/0.jpg", "/no/such/route", "/download/video"])
def test_every_route_needs_the_token(client, path):
    assert client.get(path).status_code == 403
    assert client.get(path, query_string={"token": "wrong"}).status_code == 403
    assert client.get(path, headers={"X-Review-Token": TOKEN[:-1]}).status_code == 403
    assert client.post("/api/save").status_code == 403


def test_page_and_static_files_carry_the_token_and_forbid_other_origins(client):
    page = get(client, "/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f"static/review.js?token={TOKEN}" in html and "{{TOKEN}}" not in html
    assert "http://" not in html and "https://" not in html  # nothing from the internet
    assert get(client, "/static/review.js").status_code == 200
    assert get(client, "/static/../app.py").status_code == 404
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_original_frame_is_the_runs_frame_and_preview_changes_only_the_plans_faces(client, session):
    with VideoReader(CARPHONE) as reader:
        frames = [f.bgr.copy() for f in reader]
    original = decode_jpeg(get(client, "/frame/45.jpg").data)
    assert np.abs(original.astype(int) - frames[45]).mean() < 3  # JPEG quality 85
    preview = session.preview(45)  # the pixels before JPEG: exact comparisons
    x0, y0, x1, y1 = (int(v) for v in FACE_XYXY)
    changed = np.any(preview != frames[45], axis=2)
    outside = np.ones(changed.shape, bool)
    outside[y0 - 12 : y1 + 12, x0 - 12 : x1 + 12] = False  # mask scale 1.3 pads the box
    outside[30:90, 0:50] = False  # person 2's box on frames 40-59
    assert changed[y0:y1, x0:x1].mean() > 0.5
    assert not changed[outside].any()
    assert get(client, "/frame/45.jpg", view="preview").status_code == 200
    assert get(client, "/frame/120.jpg").status_code == 404
    assert get(client, "/frame/3.jpg", view="../../etc/passwd").status_code == 400
    # Frames the analysis could not check are obscured whole in the preview, as in the render.
    assert not session.preview(100).any()
    # Sparing person 1 leaves their face as it was.
    post(client, "/api/person/1/decision", {"decision": "spare"})
    np.testing.assert_array_equal(session.preview(10), frames[10])


def test_timeline_lists_faces_obscured_frames_and_possible_misses(client):
    timeline = get(client, "/api/timeline").get_json()
    assert timeline["frames"] == 120
    assert timeline["anonymized"][39] == 1 and timeline["anonymized"][40] == 2
    assert timeline["obscured"] == [[100, 101]]
    misses = {m["frame"]: m["why"] for m in timeline["misses"]}
    assert set(misses) == {10, 40, 64}
    assert "low-confidence" in misses[10] and "track 2" in misses[40]
    assert misses[64] == "second detector disagrees (0.80)"
    kinds = {m["frame"]: m["kinds"] for m in timeline["misses"]}
    assert kinds == {10: ["low_score"], 40: ["mid_frame"], 64: ["second_detector"]}  # the page colours by kind
    (candidate,) = get(client, "/api/faces/64").get_json()["candidates"]  # the overlay labels it by source
    assert candidate == {"xyxy": SECOND_XYXY, "score": pytest.approx(0.8), "source": "second_detector"}
    assert get(client, "/api/faces/10").get_json()["candidates"][0]["source"] == "low_score"


def test_edits_change_the_plan_and_bad_edits_are_refused_with_a_message(client, session):
    state = post(client, "/api/person/2/decision", {"decision": "spare"}).get_json()
    assert [p["decision"] for p in state["persons"]] == ["anonymize", "spare"] and not state["saved"]
    bad = post(client, "/api/person/2/decision", {"decision": "publish"})
    assert bad.status_code == 400 and "decision must be one of" in bad.get_json()["error"]
    assert post(client, "/api/person/9/decision", {"decision": "spare"}).status_code == 400
    state = post(client, "/api/merge", {"keep": 1, "other": 2}).get_json()
    assert [p["person_id"] for p in state["persons"]] == [1]
    assert state["persons"][0]["decision"] == "anonymize"  # a merge never spares a face
    state = post(client, "/api/split", {"track_id": 1, "frame": 60}).get_json()
    assert [[t["first"], t["last"]] for p in state["persons"] for t in p["tracks"]] == [[0, 59], [40, 59], [60, 119]]
    assert post(client, "/api/split", {"track_id": 1, "frame": "x"}).status_code == 400

    state = post(client, "/api/regions", {"frame": 5, "xyxy": [10, 10, 50, 50]}).get_json()
    (region,) = state["regions"]
    rid = region["region_id"]
    post(client, f"/api/regions/{rid}", {"frame": 15, "xyxy": [30, 10, 70, 50]})
    state = post(client, f"/api/regions/{rid}", {"end_frame": 20}).get_json()
    assert state["regions"][0]["first"] == 5 and state["regions"][0]["last"] == 20
    assert session.plan.regions[rid].box_on(10).tolist() == [20, 10, 60, 50]  # interpolated
    assert post(client, f"/api/regions/{rid}", {"end_frame": 10}).status_code == 400  # before its last keyframe
    assert post(client, "/api/regions", {"frame": 500, "xyxy": [1, 1, 5, 5]}).status_code == 400
    assert post(client, "/api/regions", {"frame": 5, "xyxy": [1, 1, 5]}).status_code == 400
    faces = get(client, "/api/faces/10").get_json()
    assert [r["region_id"] for r in faces["regions"]] == [rid]
    assert client.delete(f"/api/regions/{rid}", query_string={"token": TOKEN, "frame": 15}).status_code == 200
    assert [k["frame"] for k in session.state()["regions"][0]["keyframes"]] == [5]
    state = post(client, "/api/blackouts", {"start_frame": 3, "end_frame": 4}).get_json()
    assert state["blackouts"] == [{"start_frame": 3, "end_frame": 4}]
    assert not session.preview(3).any()
    assert client.delete("/api/blackouts/3/4", query_string={"token": TOKEN}).status_code == 200


def test_save_writes_the_command_line_plan_path_only(client, session, tmp_path):
    post(client, "/api/person/2/decision", {"decision": "spare"})
    post(client, "/api/regions", {"frame": 5, "xyxy": [10, 10, 50, 50], "end_frame": 9})
    reply = post(client, "/api/save", {"path": str(tmp_path / "elsewhere.json")})  # a path from the page is ignored
    assert reply.get_json() == {"saved": True, "plan": "carphone.plan.json"}
    assert not (tmp_path / "elsewhere.json").exists()
    saved = Plan.load(session.plan_path)
    assert saved.to_dict() == session.plan.to_dict()
    assert saved.persons[2].decision == "spare" and saved.regions[1].last_frame == 9
    assert get(client, "/api/state").get_json()["saved"]
    assert [p.name for p in tmp_path.iterdir()] == ["carphone.plan.json"]  # no temporary file left


def test_thumbnails_are_crops_of_the_track_and_downloads_wait_for_a_render(client):
    thumb = decode_jpeg(get(client, "/thumb/1/0.jpg").data)
    assert thumb.shape[0] == 96 and 60 < thumb.shape[1] < 110  # the padded 60x70 box, 96 px high
    assert get(client, "/thumb/7/0.jpg").status_code == 404
    assert get(client, "/download/video").status_code == 404
    assert get(client, "/download/report/0").status_code == 404
    assert json.loads(get(client, "/api/render").data)["state"] == "idle"


def test_render_from_the_session_then_a_stopped_render_leaves_nothing(client, session, tmp_path):
    import time

    assert post(client, "/api/render").get_json()["state"] == "running"
    assert post(client, "/api/render").status_code == 400  # one at a time
    deadline = time.monotonic() + 60
    while (progress := get(client, "/api/render").get_json())["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert progress["state"] == "done" and progress["done"] == 120 and progress["obscured"] == 2  # the plan's unchecked frames
    assert get(client, "/download/video").data == session.output.read_bytes()
    assert json.loads(get(client, "/download/report/0").data)["frames"]["out"] == 120
    # The server stops while a render runs: the render is cancelled and its partial output removed.
    session.output.unlink()
    post(client, "/api/render")
    while session.render_progress()["done"] < 5:
        time.sleep(0.01)
    session.close()
    assert session.render_progress()["state"] == "failed" and session.render_progress()["error"] == "cancelled"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.report.json"]  # the first render's report only
