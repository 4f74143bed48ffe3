"""Many files as tasks on a real (local) Ray instance."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from faceanon_video.cli import main
from tests.conftest import BIKES, CARPHONE, decode_all

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_files_are_processed_as_ray_tasks(tmp_path, local_ray, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(CARPHONE, inputs / "a.mp4")
    shutil.copy(BIKES, inputs / "b.mp4")
    (inputs / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "out"
    out.mkdir()
    code = main([str(inputs), "-o", str(out), "--ray", "-q", "--end", "1"])
    assert code == 1  # one input is broken: reported, the others still done
    captured = capsys.readouterr()
    assert "broken.mp4" in captured.err and "not a readable video" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["a_anonymized.mp4", "b_anonymized.mp4"]
    frames, _ = decode_all(out / "a_anonymized.mp4")
    assert len(frames) == 30  # 1 s at 29.97 fps


def test_an_unreachable_cluster_is_one_clear_error_within_seconds(tmp_path):
    """ray.init on a HOST:PORT nobody listens on retries for minutes, printing Ray's C++ log lines and
    deaf to SIGTERM; the CLI says so in one line instead."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:  # a free port: nothing listens on it once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = CARPHONE
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "faceanon_video.cli", str(source), "-o", str(tmp_path / "out.mp4"), "--ray", f"127.0.0.1:{port}", "-q"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent,
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"faceanon-video: error: --ray 127.0.0.1:{port}: no Ray cluster answers there (start one with 'ray start --head', or give its address)"]
    assert not list(tmp_path.iterdir())


def test_ray_auto_without_a_cluster_is_a_user_error_not_an_internal_one(monkeypatch):
    from faceanon_video.distributed import init_ray
    from faceanon_video.errors import ConfigError

    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def no_cluster(**_):
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(ray, "init", no_cluster)
    with pytest.raises(ConfigError, match=r"^--ray auto: no Ray cluster answers there"):
        init_ray("auto")
