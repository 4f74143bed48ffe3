"""GraphSpec/Manifest: shapes, profiles and validation on literal specs (no models needed)."""

from __future__ import annotations

import pytest

from faceanon_video.anonymize.diffusion import graphs as diffusion_graphs
from faceanon_video.engines import specs
from faceanon_video.errors import ModelError


def _tiny_specs(timestep_cond: bool = False) -> dict[str, specs.GraphSpec]:
    B = specs.BATCH
    return diffusion_graphs.build_graph_specs(
        pixels=specs.TensorSpec("pixels", (B, 3, 64, 64)),
        pixels_clip=specs.TensorSpec("pixels_clip", (B, 3, 32, 32)),
        embeds=specs.TensorSpec("embeds", (B, 1, 32)),
        latents=specs.TensorSpec("latents", (B, 4, 8, 8)),
        states=[specs.TensorSpec(f"site{i}", (B, 64 // 4**min(i, 3), 16)) for i in range(7)],
        timestep_cond=specs.TensorSpec("timestep_cond", (B, 16)) if timestep_cond else None,
        guidance_batch=not timestep_cond,
    )


def test_graphs_chain_by_tensor_names():
    graphs = _tiny_specs()
    assert list(graphs) == list(diffusion_graphs.GRAPH_NAMES)
    unet = graphs[diffusion_graphs.UNET]
    assert unet.input_names[:3] == ["sample", "timestep", "context"]
    # The ReferenceNets' outputs are exactly the UNet's state inputs, in order.
    states = graphs[diffusion_graphs.REFNET_SOURCE].output_names + graphs[diffusion_graphs.REFNET_CONDITIONING].output_names
    assert unet.input_names[3:] == states
    assert states[0] == "source_site0" and states[7] == "conditioning_site0"
    assert graphs[diffusion_graphs.CLIP_VISION].outputs[0].shape == (specs.BATCH, 1, 32)
    assert unet.inputs[2].shape == (specs.BATCH, 2, 32)  # context: two embeddings per face


def test_profiles_cover_one_to_max_faces_doubled_under_guidance():
    graphs = _tiny_specs()
    unet = graphs[diffusion_graphs.UNET].profile(max_faces=3)
    assert unet["sample"] == ((1, 4, 8, 8), (6, 4, 8, 8), (6, 4, 8, 8))
    assert unet["timestep"] == ((1,), (6,), (6,))
    assert graphs[diffusion_graphs.VAE_DECODER].profile(3)["latents"][2] == (3, 4, 8, 8)
    distilled = _tiny_specs(timestep_cond=True)[diffusion_graphs.UNET]
    assert distilled.input_names[-1] == "timestep_cond"
    assert distilled.profile(3)["timestep_cond"][2] == (3, 16)


def test_dynamic_axes_are_batch_only():
    unet = _tiny_specs()[diffusion_graphs.UNET]
    axes = unet.dynamic_axes()
    assert set(axes) == set(unet.input_names + unet.output_names)
    assert all(a == {0: specs.BATCH} for a in axes.values())


def test_sample_inputs_shapes_and_ranges():
    unet = _tiny_specs()[diffusion_graphs.UNET]
    sample, timestep, *_ = unet.sample_inputs(batch=5, seed=1)
    assert sample.shape == (5, 4, 8, 8) and timestep.shape == (5,)
    assert 0 <= float(timestep.min()) and float(timestep.max()) < 1000
    pixels = _tiny_specs()[diffusion_graphs.VAE_ENCODER].sample_inputs(2)[0]
    assert -1 <= float(pixels.min()) and float(pixels.max()) <= 1
    assert not pixels.equal(_tiny_specs()[diffusion_graphs.VAE_ENCODER].sample_inputs(2, seed=7)[0])


@pytest.mark.parametrize(
    "shape", [(3, 4), ("batch", "height"), ("batch", 0), ()], ids=["static", "two-dynamic", "zero", "scalar"]
)
def test_tensor_spec_rejects_anything_but_batch_dynamic(shape):
    with pytest.raises(ValueError):
        specs.TensorSpec("x", shape)


def test_manifest_round_trip_and_errors(tmp_path):
    graphs = {
        name: specs.GraphFile(spec=spec, onnx=f"{name}.onnx", sha256="0" * 64)
        for name, spec in _tiny_specs().items()
    }
    manifest = specs.Manifest("ab" * 32, 17, "fp16", 2, graphs, {"image_size_px": 64})
    manifest.save(tmp_path)
    assert specs.Manifest.load(tmp_path) == manifest
    with pytest.raises(ModelError, match="export"):
        specs.Manifest.load(tmp_path / "missing")
    (tmp_path / specs.MANIFEST_NAME).write_text('{"format": 1}')
    with pytest.raises(ModelError, match="not a valid"):
        specs.Manifest.load(tmp_path)
    with pytest.raises(ValueError):
        specs.Manifest("ab" * 32, 17, "int8", 2, graphs, {})


def test_engines_never_import_a_model_package():
    """engines/ is generic runtime code; the diffusion package uses it, never the other way round."""
    import ast
    from pathlib import Path

    import faceanon_video.engines

    for path in Path(faceanon_video.engines.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.startswith("faceanon_video.anonymize") for n in names), (path.name, names)
