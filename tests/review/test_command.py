"""``faceanon-video review``: prints the URL, serves on loopback with the token, stops on Ctrl-C;
bad input is one line before anything starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from faceanon_video.cli import main
from tests.conftest import BIKES
from tests.review.conftest import CARPHONE, carphone_plan
from tests.review.conftest import http_status as status

ROOT = Path(__file__).parent.parent.parent


def start(args: list[str]) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BROWSER": ""}
    process = subprocess.Popen([sys.executable, "-m", "faceanon_video.cli", "review", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    assert line.startswith("Review "), line + process.stderr.read()
    return process, line.split(" at ")[1].strip()


def stop(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    return process.returncode, err


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2"])
def test_review_serves_the_plan_on_the_given_host_with_a_token(tmp_path, host):
    plan = tmp_path / "carphone.plan.json"
    carphone_plan().save(plan)
    process, url = start([str(CARPHONE), "--plan", str(plan), "-o", str(tmp_path / "out.mp4"), "--no-browser", "--host", host])
    try:
        parts = urlsplit(url)
        assert parts.hostname == host and parts.port and parts.query.startswith("token=") and len(parts.query) > 40
        assert status(url) == 200
        assert status(f"http://{host}:{parts.port}/") == 403
        assert status(f"http://{host}:{parts.port}/api/state") == 403
    finally:
        code, err = stop(process)
    assert code == 0
    assert ("warning: --host" in err) == (host != "127.0.0.1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["carphone.plan.json"]  # nothing rendered, nothing left


def test_bad_input_is_one_line_before_anything_starts(tmp_path, capsys):
    plan = tmp_path / "carphone.plan.json"
    carphone_plan().save(plan)
    (tmp_path / "done.mp4").write_bytes(b"an earlier render")
    cases = [
        ([str(tmp_path / "missing.mp4")], "no such file"),
        ([str(BIKES), "--plan", str(plan), "-o", str(tmp_path / "o.mp4")], "not the video this plan was made for"),
        ([str(CARPHONE), "--plan", str(plan), "-o", str(tmp_path / "done.mp4")], "already exists"),
        ([str(CARPHONE), "-o", str(tmp_path / "o.mp4"), "--save-plan", str(tmp_path / "x.json")], "review saves the plan to --plan"),
        ([str(CARPHONE), "--plan", str(plan), "-o", str(tmp_path / "o.mp4"), "--report", str(tmp_path / "r.txt")], "--report must end in"),
    ]
    for args, message in cases:
        assert main(["review", *args, "--no-browser"]) != 0
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["carphone.plan.json", "done.mp4"]


def test_without_a_plan_the_video_is_analysed_and_nothing_is_written_unless_saved(tmp_path):
    import json
    import shutil

    video = tmp_path / "carphone.mp4"
    shutil.copy(CARPHONE, video)
    process, url = start([str(video), "--no-browser"])
    try:
        with urllib.request.urlopen(url.replace("/?", "/api/state?"), timeout=5) as response:
            persons = json.load(response)["persons"]
        assert persons and persons[0]["frames"] > 100  # the one face of the clip, tracked
    finally:
        code, err = stop(process)
    assert code == 0 and "analysing carphone.mp4" in err and "unsaved changes were not written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["carphone.mp4"]


def test_a_busy_or_impossible_port_and_an_image_are_one_line(tmp_path, capsys):
    import socket

    from tests.conftest import DATA

    plan = tmp_path / "carphone.plan.json"
    carphone_plan().save(plan)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        cases = [
            (["--port", str(busy.getsockname()[1])], "in use"),  # was Werkzeug's two lines and exit 1
            (["--port", "99999"], "--port"),  # was served on some other port
        ]
        for args, message in cases:
            assert main(["review", str(CARPHONE), "--plan", str(plan), "-o", str(tmp_path / "o.mp4"), "--no-browser", *args]) == 2
            err = capsys.readouterr().err
            assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    finally:
        busy.close()
    # An image has no frames to review (the main command refuses plans for images too): it was analysed and served.
    assert main(["review", str(DATA / "images" / "city.jpg"), "-o", str(tmp_path / "city.jpg"), "--no-browser"]) == 2
    assert "image" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["carphone.plan.json"]
