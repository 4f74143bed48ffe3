"""Native TensorRT engines. These need a CUDA GPU and the tensorrt package: on a machine without
them every test here is skipped (``gpu`` marker, or TensorRT missing), never faked."""

from __future__ import annotations

import pytest
import torch

from faceanon_video.engines import specs
from faceanon_video.anonymize.diffusion import graphs
from faceanon_video.anonymize.diffusion.graphs import graph_functions

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def trt():
    return pytest.importorskip("tensorrt")


@pytest.fixture(scope="module")
def trt_backend(trt, tiny_engine_dir):
    from faceanon_video.anonymize.diffusion.backends import TensorRTBackend

    return TensorRTBackend(tiny_engine_dir)


@pytest.mark.parametrize("batch", [1, 3, 5])  # 5 > 2 * max_faces: chunked
@pytest.mark.parametrize("graph", graphs.GRAPH_NAMES)
def test_fp32_engine_matches_torch(graph, batch, trt_backend, torch_backend):
    spec = trt_backend.manifest.graphs[graph].spec
    inputs = spec.sample_inputs(batch, seed=batch)
    want = graph_functions(torch_backend)[graph](*inputs)
    got = graph_functions(trt_backend)[graph](*(t.cuda() for t in inputs))
    for g, w in zip(got, want, strict=True):
        assert g.is_cuda and g.dtype == torch.float32
        # TF32 may be used by TensorRT for fp32 convolutions and matmuls.
        torch.testing.assert_close(g.cpu(), w, atol=2e-3, rtol=1e-2)


def test_engines_are_cached_per_gpu_and_model(trt, trt_backend, tiny_engine_dir):
    from faceanon_video.engines.tensorrt import build_engines, cache_dir

    manifest = specs.Manifest.load(tiny_engine_dir)
    target = cache_dir(tiny_engine_dir, manifest, torch.device("cuda"))
    plans = {p.name: p.stat().st_mtime_ns for p in target.glob("*.plan")}
    assert len(plans) == len(graphs.GRAPH_NAMES)
    assert trt.__version__ in target.name
    assert build_engines(tiny_engine_dir) == target
    assert {p.name: p.stat().st_mtime_ns for p in target.glob("*.plan")} == plans  # not rebuilt
    assert any(target.parent.glob("*.timing-cache"))


def test_fp16_engines_stay_close_to_fp32_torch(trt, tiny_model_dir, tmp_path, torch_backend):
    from faceanon_video.anonymize.diffusion.export import export_models
    from faceanon_video.anonymize.diffusion.backends import TensorRTBackend

    export_models(tiny_model_dir, tmp_path / "fp16", fp16=True, max_faces=2)
    half = TensorRTBackend(tmp_path / "fp16")
    for graph in graphs.GRAPH_NAMES:
        inputs = half.manifest.graphs[graph].spec.sample_inputs(2)
        want = graph_functions(torch_backend)[graph](*inputs)
        got = graph_functions(half)[graph](*(t.cuda() for t in inputs))
        for g, w in zip(got, want, strict=True):
            assert torch.isfinite(g).all()
            assert (g.cpu() - w).abs().max() <= 2e-2 * w.abs().max() + 1e-3, graph
