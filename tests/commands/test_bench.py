"""``faceanon-video bench`` on a few frames: every stage measured, numbers consistent with each other."""

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from faceanon_video.cli import main
from faceanon_video.config import RunConfig
from faceanon_video.eval.bench import IN_ORDER_THREAD, OTHER_THREADS, STAGES, THREAD_GROUPS, _RunSampler, _thread_cpu_s, run_bench, sample_clip

DATA = Path(__file__).resolve().parents[1] / "data"
CARPHONE = DATA / "carphone_pristine.mp4"  # 176x144, one face


def test_run_bench_measures_every_stage():
    result = run_bench(CARPHONE, RunConfig(mode="blur"), max_frames=12, warmup_frames=2)
    assert (result.width, result.height) == (176, 144)
    assert result.frames == 12
    assert set(result.stages) == set(STAGES)
    for name, stage in result.stages.items():
        # Files detect every 2nd frame by default (track.backfill covers the others), and the last
        # frame (11) always: the frames before it need a later pass to be checked against.
        assert stage.calls == (7 if name == "detect" else 12), name
        assert 0 < stage.mean_ms <= stage.total_s * 1000
    # One face in every frame of this clip; the detector finds it.
    assert result.faces >= 10
    assert 0 < result.fps and result.wall_s > 0
    lat = result.latency_ms
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert len(result.frame_latency_ms) == 12
    assert result.peak_rss_mb > 50
    assert result.machine["cores"] >= 1 and result.machine["cpu"]
    assert "end-to-end" in result.table() and "detect" in result.table()
    if result.cpu_ms_per_frame is not None:  # Linux
        assert set(result.cpu_ms_per_frame) == {*THREAD_GROUPS.values(), IN_ORDER_THREAD, OTHER_THREADS}
        assert sum(result.cpu_ms_per_frame.values()) > 0
        assert 0 < result.cores_busy <= result.machine["cores"] + 0.5
        assert "cores busy" in result.table()


def _burn(seconds: float) -> None:
    """Spend CPU mostly outside the GIL, as the pipeline's threads do (hashlib releases it)."""
    block = bytes(1 << 20)
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        hashlib.sha256(block)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread CPU times come from Linux's /proc")
def test_cpu_time_is_attributed_to_the_thread_that_spent_it():
    before = _thread_cpu_s()[threading.get_native_id()]
    _burn(0.05)
    assert _thread_cpu_s()[threading.get_native_id()] >= before + 0.03  # 10 ms ticks
    with _RunSampler() as sampler:
        encoder = threading.Thread(target=_burn, args=(0.3,), name="encode")
        encoder.start()
        _burn(0.1)  # the calling thread: the pipeline's in-order work
        encoder.join()  # ended before the run did: its CPU must still count
    used = sampler.cpu_s_by_group()
    assert used[THREAD_GROUPS["encode"]] >= 0.25
    assert 0.05 <= used[IN_ORDER_THREAD] < 0.25
    assert used[THREAD_GROUPS["decode"]] == used[THREAD_GROUPS["detect"]] == 0


def test_bench_command_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "latency.png"
    code = main(["bench", str(CARPHONE), "--frames", "6", "--warmup", "1", "--mode", "solid", "--json", "--plot", str(png)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "solid" and report["frames"] == 6
    assert report["stages"]["detect"]["fps"] > 0 and report["fps"] > 0
    assert "frame_latency_ms" not in report
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_defaults_to_the_sample_clip(capsys):
    assert sample_clip() is not None
    assert main(["bench", "--frames", "3", "--warmup", "0", "--mode", "none"]) == 0
    out = capsys.readouterr().out
    assert "short_hamilton_clip.mp4 (640x360, 3 frames" in out


def test_bench_missing_input_is_an_error(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "nope.mp4")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("frames", ["0", "-3"])
def test_bench_bad_frame_count(frames, capsys):
    assert main(["bench", str(CARPHONE), "--frames", frames]) == 2
    assert "--frames" in capsys.readouterr().err


def test_scaled_clip(tmp_path):
    import av

    from faceanon_video.eval.bench import scaled_clip

    out = scaled_clip(CARPHONE, tmp_path / "big.mp4", 288, max_frames=5)
    with av.open(str(out)) as container:
        frames = [f for f in container.decode(video=0)]
    assert len(frames) == 5
    assert (frames[0].width, frames[0].height) == (352, 288)
