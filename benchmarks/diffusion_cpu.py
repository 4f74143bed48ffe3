"""CPU benchmark of the diffusion anonymizer with the tiny random model (no weights needed).

Prints three tables:

1. ms per face per frame against sampling steps and faces per batch (the whole ``apply``: align,
   CLIP + VAE encode, both ReferenceNets, the denoising loop, decode, colour match, paste-back),
   on real frames of tests/data/carphone_pristine.mp4 with its face repeated N times;
2. temporal stability on 24 consecutive real frames: mean absolute frame-to-frame difference of
   the generated aligned face crops, per-track fixed noise vs a fresh draw per frame (what the
   research code does), and with temporal smoothing;
3. one reference self-attention at the published model's largest site (64x64 latents, 320
   channels, 5 heads): queries from own tokens only vs the original's queries over all tokens.

The tiny model's absolute speed says little about the 865M-parameter UNet; tables 1-2 measure the
anonymizer's own overheads and behaviour, table 3 the real-size attention saving.

    python benchmarks/diffusion_cpu.py [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceanon_video.anonymize.diffusion import DiffusionAnonymizer, DiffusionSettings  # noqa: E402
from faceanon_video.anonymize.diffusion.align import align_faces  # noqa: E402
from faceanon_video.anonymize.diffusion.backend import TorchBackend  # noqa: E402
from faceanon_video.anonymize.diffusion.models import build_tiny_models  # noqa: E402
from faceanon_video.detect.yunet import YuNetDetector  # noqa: E402
from faceanon_video.io.decode import VideoReader  # noqa: E402
from faceanon_video.types import Detections, Frame  # noqa: E402

CLIP = ROOT / "tests" / "data" / "carphone_pristine.mp4"


def real_frames(count: int) -> tuple[list[np.ndarray], list[Detections]]:
    """The first ``count`` frames of the clip and the one face YuNet finds in each."""
    with VideoReader(CLIP) as reader:
        frames = [frame.bgr for frame, _ in zip(reader, range(count))]
    detector = YuNetDetector()
    return frames, [detector.detect(bgr)[:1] for bgr in frames]


def repeat_face(face: Detections, n: int) -> Detections:
    many = face[np.zeros(n, int)]
    many.track_id = np.arange(n, dtype=np.int64)
    return many


def speed_table(backend, frames, faces, repeats: int) -> None:
    print("\n1. ms per face per frame (whole apply), tiny model, DPM-Solver++ trailing, CFG on")
    batches = (1, 2, 4, 8)
    print("steps | " + " | ".join(f"batch {b}" for b in batches))
    print("---|" + "---|" * len(batches))
    for steps in (1, 2, 4, 8):
        row = []
        for batch in batches:
            anonymizer = DiffusionAnonymizer(backend, DiffusionSettings(steps=steps, max_batch_faces=batch))
            many = repeat_face(faces[0], batch)
            anonymizer.apply(Frame(frames[0], 0), many)  # warm-up
            times = []
            for r in range(repeats):
                start = time.perf_counter()
                anonymizer.apply(Frame(frames[r % len(frames)], r), many)
                times.append(time.perf_counter() - start)
            row.append(f"{1000 * statistics.median(times) / batch:.1f}")
        print(f"{steps} | " + " | ".join(row))


def flicker(anonymizer, frames, faces, seeds) -> float:
    outputs = []
    for index, (bgr, face, seed) in enumerate(zip(frames, faces, seeds)):
        crop = np.ascontiguousarray(align_faces(bgr, face, anonymizer.size_px).pixels[..., ::-1])
        outputs.append(anonymizer.generate(crop, np.array([seed], np.uint64), [1], index)[0].astype(np.float32))
    return float(np.mean([np.abs(b - a).mean() for a, b in zip(outputs, outputs[1:])]))


def stability_table(backend, frames, faces) -> None:
    print(f"\n2. temporal stability on {len(frames)} consecutive carphone frames, 4 steps:")
    print("mean abs frame-to-frame difference of the generated 64 px face crops (0-255)")
    source = [np.ascontiguousarray(align_faces(f, d, 64).pixels) for f, d in zip(frames, faces)]
    input_flicker = float(np.mean([np.abs(b.astype(np.float32) - a).mean() for a, b in zip(source, source[1:])]))
    make = lambda **kw: DiffusionAnonymizer(backend, DiffusionSettings(steps=4, **kw))  # noqa: E731
    n = len(frames)
    rows = [
        ("input face crops (the real motion)", input_flicker),
        ("fresh noise every frame (research code)", flicker(make(), frames, faces, range(1000, 1000 + n))),
        ("per-track fixed noise (ours, default)", flicker(make(), frames, faces, [7] * n)),
        ("fixed noise + temporal_smoothing 0.5", flicker(make(temporal_smoothing=0.5), frames, faces, [7] * n)),
    ]
    print("setting | flicker")
    print("---|---")
    for name, value in rows:
        print(f"{name} | {value:.2f}")


def attention_table(repeats: int) -> None:
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    print("\n3. one reference self-attention at SD 2.1's largest site (4096 own + 8192 reference tokens, 320 ch, 5 heads)")
    torch.manual_seed(0)
    attn = Attention(query_dim=320, heads=5, dim_head=64).eval()
    own, refs = torch.randn(1, 4096, 320), torch.randn(1, 8192, 320)
    everything = torch.cat([own, refs], dim=1)
    processor = AttnProcessor2_0()

    def timed(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)

    with torch.inference_mode():
        ours = timed(lambda: processor(attn, own, encoder_hidden_states=everything))
        full = timed(lambda: processor(attn, everything, encoder_hidden_states=everything)[:, :4096])
    print("queries | ms")
    print("---|---")
    print(f"own tokens only (ours) | {ours:.0f}")
    print(f"all tokens, keep first third (original) | {full:.0f}")
    print(f"speed-up | {full / ours:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {torch.get_num_threads()} used")
    backend = TorchBackend(build_tiny_models(seed=0))
    frames, faces = real_frames(24)
    speed_table(backend, frames, faces, args.repeats)
    stability_table(backend, frames, faces)
    attention_table(args.repeats)


if __name__ == "__main__":
    main()
