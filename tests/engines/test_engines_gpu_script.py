"""benchmarks/engines_gpu.py --random-weights: the GPU script's own code path, on the CPU with the
tiny config (so on a GPU the only unknown is the GPU), and its refusal without CUDA."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "engines_gpu.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("engines_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_random_weights_run_on_the_cpu_with_the_tiny_config(script, tmp_path, capsys):
    results = tmp_path / "results.json"
    argv = ["--random-weights", "--tiny", "--device", "cpu", "--backends", "torch,onnx", "--faces", "1,2",
            "--steps", "1,2", "--repeats", "1", "--work-dir", str(tmp_path), "--json", str(results)]
    assert script.main(argv) == 0
    data = json.loads(results.read_text())
    assert data["device"] == "cpu" and data["models"] == "random tiny"
    assert set(data["backends"]) == {"torch", "onnx"}
    for entry in data["backends"].values():
        frames = entry["frames"]
        assert sorted(frames) == ["1x1", "1x2", "2x1", "2x2"]
        for frame in frames.values():
            assert frame["fps"] > 0 and frame["faces_per_s"] == pytest.approx(frame["faces"] * frame["fps"])
            assert all(ms > 0 for ms in frame["stages_ms"].values())
            assert frame["unet_batch"] == 2 * frame["faces"]  # guidance 4 doubles the UNet batch
    assert "OnnxBackend(device=cpu, precision=fp32)" in data["backends"]["onnx"]["repr"]
    assert (tmp_path / "engines" / "manifest.json").is_file()
    assert any("exported fp32 ONNX graphs" in phase for phase in data["phases_s"])
    out = capsys.readouterr().out
    assert "| steps | faces | frame ms | frames/s | faces/s |" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_measures_nothing_and_says_so(script, capsys):
    assert script.main(["--random-weights"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA GPU" in err and "nothing was measured" in err


@pytest.mark.gpu
@pytest.mark.slow
def test_random_weights_sd21_on_the_gpu(script, tmp_path):
    """The real thing (minutes): SD 2.1-size random models through all three backends."""
    pytest.importorskip("tensorrt")
    results = tmp_path / "results.json"
    assert script.main(["--random-weights", "--work-dir", str(tmp_path), "--json", str(results), "--repeats", "2"]) == 0
    data = json.loads(results.read_text())
    assert set(data["backends"]) == {"torch", "onnx", "tensorrt"}
    assert data["total_s"] < 8 * 60
