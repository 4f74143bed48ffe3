"""Many files as tasks on a real (local) Ray instance."""

from __future__ import annotations

import shutil

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
