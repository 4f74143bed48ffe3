"""The review page's HTTP routes (Flask): the page, frames as JPEG, the plan as JSON, edits, render.

Every request must carry the run's token (``?token=...``, or the ``X-Review-Token`` header the page
sends with its JSON calls); anything else gets 403 before any route runs. No route takes a path:
the files it reads and writes are the session's, fixed on the command line. Responses forbid
loading anything from another origin (Content-Security-Policy), sending the URL (and its token) as
a referrer, and caching frames or the plan on disk.
"""

from __future__ import annotations

import hmac
import logging
from importlib import resources

from flask import Flask, Response, abort, jsonify, request, send_file

from faceanon_video.errors import FaceanonError
from faceanon_video.review.frames import jpeg
from faceanon_video.review.session import ReviewSession

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Review-Token"
STATIC = ("review.js", "review.css")
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"


def create_app(session: ReviewSession, token: str) -> Flask:
    app = Flask(__name__, static_folder=None)  # static files go through the token check like the rest
    static = resources.files("faceanon_video.review") / "static"

    @app.before_request
    def require_token():
        given = request.args.get("token") or request.headers.get(TOKEN_HEADER) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            abort(403)

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(ValueError)
    def bad_edit(exc: ValueError):
        return jsonify(error=str(exc)), 400

    @app.errorhandler(FaceanonError)
    def failed(exc: FaceanonError):  # a damaged frame, a plan that cannot be saved: one line for the page
        log.warning("%s", exc)
        return jsonify(error=str(exc)), 500

    @app.get("/")
    def page():
        html = (static / "index.html").read_text(encoding="utf-8").replace("{{TOKEN}}", token)
        return Response(html, mimetype="text/html")

    @app.get("/static/<name>")
    def static_file(name: str):
        if name not in STATIC:
            abort(404)
        mimetype = "text/javascript" if name.endswith(".js") else "text/css"
        return Response((static / name).read_text(encoding="utf-8"), mimetype=mimetype)

    @app.get("/api/video")
    def video():
        return jsonify(session.video())

    @app.get("/api/state")
    def state():
        return jsonify(session.state())

    @app.get("/api/timeline")
    def timeline():
        return jsonify(session.timeline())

    @app.get("/api/faces/<int:index>")
    def faces(index: int):
        _check_frame(session, index)
        return jsonify(session.faces(index))

    @app.get("/frame/<int:index>.jpg")
    def frame(index: int):
        _check_frame(session, index)
        view = request.args.get("view", "original")
        if view not in ("original", "preview"):
            abort(400)
        image = session.preview(index) if view == "preview" else session.original(index)
        return Response(jpeg(image), mimetype="image/jpeg")

    @app.get("/thumb/<int:track_id>/<int:k>.jpg")
    def thumb(track_id: int, k: int):
        try:
            return Response(jpeg(session.thumbnail(track_id, k)), mimetype="image/jpeg")
        except KeyError:
            abort(404)

    @app.post("/api/person/<int:person_id>/decision")
    def decision(person_id: int):
        session.set_decision(person_id, _body().get("decision", ""))
        return jsonify(session.state())

    @app.post("/api/merge")
    def merge():
        body = _body()
        session.merge(_int(body, "keep"), _int(body, "other"))
        return jsonify(session.state())

    @app.post("/api/split")
    def split():
        body = _body()
        session.split(_int(body, "track_id"), _int(body, "frame"))
        return jsonify(session.state())

    @app.post("/api/regions")
    def add_region():
        body = _body()
        end = body.get("end_frame")
        session.add_region(_int(body, "frame"), _box(body), body.get("mode", "interpolate"), None if end is None else int(end))
        return jsonify(session.state())

    @app.post("/api/regions/<int:region_id>")
    def update_region(region_id: int):
        body = _body()
        keyframe = {"frame": _int(body, "frame"), "xyxy": _box(body)} if "xyxy" in body else None
        session.update_region(region_id, keyframe=keyframe, mode=body.get("mode"), end_frame=body.get("end_frame", "keep"))
        return jsonify(session.state())

    @app.delete("/api/regions/<int:region_id>")
    def remove_region(region_id: int):
        frame_index = request.args.get("frame", type=int)
        if frame_index is None:
            session.remove_region(region_id)
        else:
            session.remove_keyframe(region_id, frame_index)
        return jsonify(session.state())

    @app.post("/api/blackouts")
    def add_blackout():
        body = _body()
        session.add_blackout(_int(body, "start_frame"), _int(body, "end_frame"))
        return jsonify(session.state())

    @app.delete("/api/blackouts/<int:start>/<int:end>")
    def remove_blackout(start: int, end: int):
        session.remove_blackout(start, end)
        return jsonify(session.state())

    @app.post("/api/save")
    def save():
        path = session.save()
        return jsonify(saved=True, plan=path.name)

    @app.post("/api/render")
    def render():
        session.start_render()
        return jsonify(session.render_progress())

    @app.get("/api/render")
    def render_progress():
        return jsonify(session.render_progress())

    @app.get("/download/video")
    def download_video():
        if not session.render_progress().get("rendered") or not session.output.exists():
            abort(404)
        return send_file(session.output, as_attachment=True, download_name=session.output.name)

    @app.get("/download/report/<int:k>")
    def download_report(k: int):
        if not session.render_progress().get("rendered") or k >= len(session.reports) or not session.reports[k].exists():
            abort(404)
        report = session.reports[k]
        return send_file(report, as_attachment=True, download_name=report.name)

    return app


def _check_frame(session: ReviewSession, index: int) -> None:
    if not 0 <= index < session.frames.frame_count:
        abort(404)


def _body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")  # noqa: TRY004 - a 400 for the page, like every bad edit
    return body


def _int(body: dict, key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"{key}: expected a whole number")
    return int(value)


def _box(body: dict) -> list[float]:
    box = body.get("xyxy")
    if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        raise ValueError("xyxy: expected [x0, y0, x1, y1]")
    return [float(v) for v in box]
