"""Export of the tiny model: valid ONNX, exact I/O contract, manifest, caching, external data, fp16."""

from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest
import torch

from faceanon_video.anonymize.diffusion import export as diffusion_export
from faceanon_video.anonymize.diffusion import graphs
from faceanon_video.engines import export, specs
from faceanon_video.anonymize.diffusion.graphs import graph_functions


def test_every_graph_passes_the_checker_with_batch_the_only_dynamic_axis(tiny_engine_dir):
    manifest = specs.Manifest.load(tiny_engine_dir)
    assert set(manifest.graphs) == set(graphs.GRAPH_NAMES)
    for name, graph in manifest.graphs.items():
        path = tiny_engine_dir / graph.onnx
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path))
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
        values = {v.name: v for v in (*model.graph.input, *model.graph.output)}
        assert list(values) == graph.spec.input_names + graph.spec.output_names
        for tensor in (*graph.spec.inputs, *graph.spec.outputs):
            dims = values[tensor.name].type.tensor_type.shape.dim
            assert dims[0].dim_param == specs.BATCH, (name, tensor.name)
            assert [d.dim_value for d in dims[1:]] == list(tensor.shape[1:]), (name, tensor.name)
            assert values[tensor.name].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        # Cleaned: no node is left without a path to an output (graphsurgeon's cleanup ran).
        assert graph.external_data is None and graph.sha256 == export.sha256_files([path])


def test_manifest_records_source_hash_shapes_and_model_info(tiny_engine_dir, tiny_model_dir):
    data = json.loads((tiny_engine_dir / specs.MANIFEST_NAME).read_text())
    assert data["source_sha256"] == export.model_sha256(tiny_model_dir)
    assert (data["opset"], data["precision"], data["max_faces"]) == (17, "fp32", 2)
    assert data["model_info"]["image_size_px"] == 64
    assert data["model_info"]["clip_processor"]["crop_size"] == {"height": 32, "width": 32}
    assert len(data["model_info"]["sites"]) == 7
    unet = data["graphs"]["unet"]["spec"]
    assert unet["inputs"][0] == {"name": "sample", "shape": ["batch", 4, 8, 8], "dtype": "float32"}
    assert len(unet["inputs"]) == 3 + 2 * 7 and unet["guidance_batch"] is True
    assert (tiny_engine_dir / "scheduler" / "scheduler_config.json").is_file()


def test_reexport_reuses_up_to_date_graphs(tiny_engine_dir, tiny_model_dir):
    before = {p.name: p.stat().st_mtime_ns for p in tiny_engine_dir.glob("*.onnx")}
    manifest = diffusion_export.export_models(tiny_model_dir, tiny_engine_dir, max_faces=2)
    assert {p.name: p.stat().st_mtime_ns for p in tiny_engine_dir.glob("*.onnx")} == before
    assert manifest == specs.Manifest.load(tiny_engine_dir)


def test_model_hash_changes_with_any_weight(tmp_path):
    (tmp_path / "unet").mkdir()
    weights = tmp_path / "unet" / "w.safetensors"
    weights.write_bytes(b"\x00" * 10)
    first = export.model_sha256(tmp_path)
    weights.write_bytes(b"\x00" * 9 + b"\x01")
    assert export.model_sha256(tmp_path) != first


def test_large_graphs_keep_weights_in_one_external_file(torch_backend, tmp_path):
    """The > 2 GiB path, with the threshold lowered so a tiny graph takes it."""
    spec = graphs.probe_specs(torch_backend)[graphs.VAE_DECODER]
    module = export.TracedFunction(graph_functions(torch_backend)[graphs.VAE_DECODER], spec, list(torch_backend.models.modules().values()), torch_backend.dtype)
    graph = export.export_graph(module, spec, tmp_path / "vae_decoder.onnx", external_data_bytes=1)
    assert graph.external_data == "vae_decoder.onnx.data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae_decoder.onnx", "vae_decoder.onnx.data"]
    onnx.checker.check_model(str(tmp_path / "vae_decoder.onnx"), full_check=True)
    assert (tmp_path / "vae_decoder.onnx").stat().st_size < (tmp_path / "vae_decoder.onnx.data").stat().st_size
    latents = spec.sample_inputs(2)[0]
    session = ort.InferenceSession(str(tmp_path / "vae_decoder.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"latents": latents.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), torch_backend.vae_decode(latents), atol=1e-4, rtol=0)


def test_fp16_unet_matches_fp32_torch(tiny_model_dir, tmp_path):
    """fp16 graphs keep float32 I/O and stay close to the float32 reference (CPU ONNX Runtime)."""
    from faceanon_video.anonymize.diffusion.backend import TorchBackend
    from faceanon_video.anonymize.diffusion.models import load_models

    reference = TorchBackend(load_models(tiny_model_dir))
    half = TorchBackend(load_models(tiny_model_dir), dtype=torch.float16)
    diffusion_export.upcast_attention(half.models)  # as export_models does for fp16
    spec = graphs.probe_specs(reference)[graphs.UNET]
    module = export.TracedFunction(graph_functions(half)[graphs.UNET], spec, list(half.models.modules().values()), half.dtype)
    export.export_graph(module, spec, tmp_path / "unet.onnx")
    model = onnx.load(str(tmp_path / "unet.onnx"))
    weights = [t for t in model.graph.initializer if t.name.endswith("weight")]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT

    inputs = spec.sample_inputs(batch=2, seed=3)
    session = ort.InferenceSession(str(tmp_path / "unet.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, dict(zip(spec.input_names, (t.numpy() for t in inputs))))[0])
    want = graph_functions(reference)[graphs.UNET](*inputs)[0]
    error = (got - want).abs().max().item()
    assert error < 2e-2 * want.abs().max().item(), error
    assert error > 0  # really computed in half precision


def test_upcast_attention_swaps_sdpa_where_the_model_asks(tiny_model_dir):
    from diffusers.models.attention_processor import Attention, AttnProcessor

    from faceanon_video.anonymize.diffusion.backend import TorchBackend
    from faceanon_video.anonymize.diffusion.models import load_models

    models = load_models(tiny_model_dir)
    TorchBackend(models)  # installs the reference writers/readers that wrap an inner processor
    unet_attention = [m for m in models.unet.modules() if isinstance(m, Attention)]
    vae_attention = [m for m in models.vae.modules() if isinstance(m, Attention)]
    assert vae_attention and all(m.upcast_softmax for m in vae_attention)
    # The tiny UNet does not set upcast_attention: only the VAE's attention is changed.
    assert diffusion_export.upcast_attention(models) == len(vae_attention)
    assert all(isinstance(m.processor, AttnProcessor) for m in vae_attention)
    for module in unet_attention:
        module.upcast_attention = True  # as SD 2.1's config does
    assert diffusion_export.upcast_attention(models) == len(unet_attention)
    readers = [m.processor for m in unet_attention if hasattr(m.processor, "inner")]
    assert readers and all(isinstance(p.inner, AttnProcessor) for p in readers)
    assert all(isinstance(getattr(m.processor, "inner", m.processor), AttnProcessor) for m in unet_attention)


def test_export_rejects_bad_settings(tiny_model_dir, tmp_path):
    from faceanon_video.errors import ConfigError

    with pytest.raises(ConfigError, match="opset"):
        diffusion_export.export_models(tiny_model_dir, tmp_path, opset=13)
    with pytest.raises(ConfigError, match="max_faces"):
        diffusion_export.export_models(tiny_model_dir, tmp_path, max_faces=0)
