"""The ONNX Runtime backend against the PyTorch reference: every graph, a whole frame, the pipeline."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from faceanon_video.anonymize.diffusion.backends import OnnxBackend
from faceanon_video.engines.onnx import available_providers
from faceanon_video.anonymize.diffusion import graphs
from faceanon_video.anonymize.diffusion.graphs import graph_functions
from faceanon_video.errors import ConfigError, ModelError

DATA = Path(__file__).parents[1] / "data"
ATOL = 1e-4


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("graph", graphs.GRAPH_NAMES)
def test_graph_matches_torch(graph, batch, torch_backend, onnx_backend):
    spec = onnx_backend.manifest.graphs[graph].spec
    inputs = spec.sample_inputs(batch, seed=batch)
    want = graph_functions(torch_backend)[graph](*inputs)
    got = graph_functions(onnx_backend)[graph](*inputs)
    assert len(got) == len(spec.outputs)
    for g, w, out in zip(got, want, spec.outputs, strict=True):
        assert g.shape == out.concrete(batch) and g.dtype == torch.float32
        assert w.std() > 1e-3  # a real signal, so a match means something
        torch.testing.assert_close(g, w, atol=ATOL, rtol=0)


def test_unet_accepts_scalar_and_integer_timesteps(torch_backend, onnx_backend):
    sample, _, context, *states = onnx_backend.manifest.graphs[graphs.UNET].spec.sample_inputs(2)
    source, conditioning = states[:7], states[7:]
    want = torch_backend.unet(sample, torch.tensor(981), context, source, conditioning)
    for timestep in (981, 981.0, torch.tensor(981), torch.tensor([981, 981])):
        got = onnx_backend.unet(sample, timestep, context, source, conditioning)
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="timestep_cond"):
        onnx_backend.unet(sample, 981, context, source, conditioning, timestep_cond=torch.zeros(2, 16))


def test_batches_over_the_engine_limit_run_in_chunks(onnx_backend):
    runner = onnx_backend.runners[graphs.REFNET_SOURCE]
    calls = []

    class Limited:
        spec, max_batch = runner.spec, 2

        def __call__(self, *inputs):
            calls.append(inputs[0].shape[0])
            return runner(*inputs)

    latents, embeds = runner.spec.sample_inputs(5)
    want = onnx_backend.reference_states(latents, embeds, "source")
    onnx_backend.runners[graphs.REFNET_SOURCE] = Limited()
    try:
        got = onnx_backend.reference_states(latents, embeds, "source")
    finally:
        onnx_backend.runners[graphs.REFNET_SOURCE] = runner
    assert calls == [2, 2, 1]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=0)


def test_wrong_shapes_and_providers_are_clear_errors(tiny_engine_dir, onnx_backend, tmp_path):
    with pytest.raises(ValueError, match="only the batch may change"):
        onnx_backend.vae_decode(torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match="which"):
        onnx_backend.reference_states(torch.zeros(1, 4, 8, 8), torch.zeros(1, 1, 32), "target")
    with pytest.raises(ConfigError, match="unknown"):
        OnnxBackend(tiny_engine_dir, providers=["gpu"])
    if "cuda" not in available_providers():
        with pytest.raises(ConfigError, match="not available here"):
            OnnxBackend(tiny_engine_dir, providers=["cuda"])
    with pytest.raises(ModelError, match="export"):
        OnnxBackend(tmp_path)


def test_backend_exposes_the_anonymizer_attributes(onnx_backend, torch_backend):
    from faceanon_video.anonymize.diffusion.backend import DiffusionBackend

    assert isinstance(onnx_backend, DiffusionBackend)
    for name in ("image_size_px", "time_cond_proj_dim", "dtype"):
        assert getattr(onnx_backend, name) == getattr(torch_backend, name), name
    assert onnx_backend.clip_processor.to_dict() == torch_backend.clip_processor.to_dict()
    assert onnx_backend.scheduler.config.prediction_type == "v_prediction"


class _Recording:
    """Passes every call through and keeps the decoder's float output."""

    def __init__(self, backend):
        self.backend = backend
        self.decoded = None

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def vae_decode(self, latents):
        self.decoded = self.backend.vae_decode(latents)
        return self.decoded


def _faces(bgr):
    from faceanon_video.detect import build_detector

    faces = build_detector("yunet").detect(bgr)
    assert len(faces) >= 2
    return faces


def test_whole_anonymized_frame_matches_torch(torch_backend, onnx_backend):
    import cv2

    from faceanon_video.anonymize.diffusion.anonymizer import DiffusionAnonymizer
    from faceanon_video.anonymize.diffusion.config import DiffusionSettings
    from faceanon_video.types import Frame

    bgr = cv2.imread(str(DATA / "images" / "two_people.jpg"))
    faces = _faces(bgr)
    settings = DiffusionSettings(steps=2, scheduler="ddim")
    results = {}
    for name, backend in (("torch", torch_backend), ("onnx", onnx_backend)):
        recording = _Recording(backend)
        frame = DiffusionAnonymizer(recording, settings).apply(Frame(bgr=bgr.copy(), index=0), faces)
        results[name] = (frame.bgr, recording.decoded)
    (torch_bgr, torch_pixels), (onnx_bgr, onnx_pixels) = results["torch"], results["onnx"]
    # The float result of the whole chain (CLIP, VAE, both ReferenceNets, 2 UNet steps with 4x
    # guidance, decoder) agrees to 1e-4 of full scale ([0, 1] intensities); after rounding to
    # uint8 a pixel may differ by a level or two.
    assert onnx_pixels.shape == (len(faces), 3, 64, 64)
    torch.testing.assert_close((onnx_pixels + 1) / 2, (torch_pixels + 1) / 2, atol=ATOL, rtol=0)
    difference = np.abs(onnx_bgr.astype(int) - torch_bgr.astype(int))
    # Rounding to uint8 after colour matching (mean/std over the face mask) can flip a pixel by 2.
    assert difference.max() <= 2 and (difference > 0).mean() < 1e-3
    assert np.abs(onnx_bgr.astype(int) - bgr.astype(int)).max() > 50  # faces really replaced


def test_pipeline_runs_end_to_end_on_the_onnx_backend(tiny_engine_dir, tmp_path, caplog):
    import av

    from faceanon_video.config import RunConfig
    from faceanon_video.pipeline import process_file

    source, output = DATA / "carphone_pristine.mp4", tmp_path / "out.mp4"
    config = RunConfig(mode="diffusion", engine_dir=str(tiny_engine_dir), backend="onnx", steps=1, end_s=0.5, progress=False)
    with caplog.at_level(logging.INFO):
        summary = process_file(source, output, config)
    assert summary.frames >= 10 and summary.faces >= summary.frames // 2
    assert summary.obscured_frames == 0  # every face anonymized, no fail-closed blackout
    with av.open(str(source)) as a, av.open(str(output)) as b:
        before = [f.to_ndarray(format="bgr24") for f in a.decode(video=0)][: summary.frames]
        after = [f.to_ndarray(format="bgr24") for f in b.decode(video=0)]
    assert len(after) == summary.frames
    x0, y0, x1, y1 = _first_face(before[0])
    # The middle half of the face box (eyes, nose, mouth) is replaced; a far corner is not.
    dx, dy = (x1 - x0) / 4, (y1 - y0) / 4
    inner = np.s_[int(y0 + dy) : int(y1 - dy), int(x0 + dx) : int(x1 - dx)]
    face_change = np.abs(after[0][inner].astype(int) - before[0][inner].astype(int)).mean()
    corner_change = np.abs(after[0][:24, :24].astype(int) - before[0][:24, :24].astype(int)).mean()
    assert face_change > 15 and corner_change < 4, (face_change, corner_change)


def _first_face(bgr) -> np.ndarray:
    from faceanon_video.detect import build_detector

    faces = build_detector("yunet").detect(bgr)
    assert len(faces) >= 1
    return faces.xyxy[0]
