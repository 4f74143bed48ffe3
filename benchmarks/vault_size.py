"""Vault size against the anonymized video, and what restore gives back, per ``--vault-quality``.

    PYTHONPATH=$PWD python benchmarks/vault_size.py [--work DIR] [--clips hamilton,hamilton_720p,portrait]

For each clip and quality: anonymize (default settings, blur, CRF 20) with ``--vault``; restore at
``--crf 0`` (so what is measured is the vault's loss, not the restore encoder's); compare the restored
frames with the input's decoded frames inside every vault region (max and mean absolute error per
BGR value, PSNR), and the vault's luma with the input's (``luma_fidelity``: PSNR and SSIM of Y, the
"visually lossless" criterion ``vault.FaceVideo`` aims at), the worst stretch of the stream by the
writer's own measures and how many stretches missed the bar and were encoded again (``high``). Also
the run time with and without the vault (one run each: noisy on shared cores).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.clips import DATA, HAMILTON, resolution_clip
from faceanon_video.cli import main
from faceanon_video.io.decode import VideoReader
from faceanon_video.keys import load_key
from faceanon_video.vault import FaceVideo, VaultReader, ssim_sum

CLIPS = {
    "hamilton": lambda work: HAMILTON,  # 640x360, 275 frames, ~5 faces a frame
    "hamilton_720p": lambda work: resolution_clip(work, 720),
    "carphone": lambda work: DATA / "carphone_pristine.mp4",  # 176x144, one face
    "portrait": lambda work: Path("/work/shared/data/videos/portrait_d3.mp4"),  # one large talking head
}


def _frames(path: Path) -> list:
    with VideoReader(path) as reader:
        return list(reader)


def _stats(diffs: list[np.ndarray]) -> dict:
    d = np.concatenate(diffs).astype(np.float64)
    mse = float(np.mean(d**2))
    return {"max_abs": int(d.max()), "mean_abs": round(float(d.mean()), 3), "p999_abs": int(np.percentile(d, 99.9)),
            "psnr_db": round(10 * np.log10(255**2 / mse), 1) if mse else float("inf")}  # fmt: skip


def luma_fidelity(source: Path, vault: Path, key: Path) -> dict:
    """PSNR and SSIM of the vault's Y plane against the input's, over every (even-edged) region."""
    original = _frames(source)
    squared, ssim, count = 0.0, 0.0, 0
    with VaultReader(vault, load_key(key)) as reader:
        for record in reader:
            frame = original[record.frame_index]
            for face in record.faces:
                if face.planes is None or not frame.is_i420:
                    continue  # kept as PNG, or cut at an odd edge: no planes to compare
                x0, y0, x1, y1 = face.xyxy
                stored, truth = face.planes[0].astype(np.float64), frame.planes()[0][y0:y1, x0:x1]
                squared += float(((stored - truth) ** 2).sum())
                ssim += ssim_sum(stored, truth)
                count += truth.size
    psnr = 10 * np.log10(255**2 * count / squared) if squared else float("inf")
    return {"vault_psnr_y_db": round(float(psnr), 2), "vault_ssim_y": round(ssim / count, 4)}


def restore_error(source: Path, restored: Path, vault: Path, key: Path) -> dict:
    """Inside every vault region: the vault's crops against the input's (``vault_*``: the vault's own
    loss), and the restored video against the input (``restore_*``: also the restore's own round trip
    through BGR, which mixes chroma across a region's edge when it is at an odd coordinate). Frames are
    read with our reader on both sides, so the colour conversion is the same."""
    original, back = _frames(source), _frames(restored)
    in_vault, in_restore = [], []
    with VaultReader(vault, load_key(key)) as reader:
        for record in reader:
            for face in record.faces:
                x0, y0, x1, y1 = face.xyxy
                truth = original[record.frame_index].crop_bgr(x0, y0, x1, y1).astype(np.int16)
                in_vault.append(np.abs(face.bgr - truth).ravel())
                in_restore.append(np.abs(back[record.frame_index].crop_bgr(x0, y0, x1, y1) - truth).ravel())
    return {**{f"vault_{k}": v for k, v in _stats(in_vault).items()}, **{f"restore_{k}": v for k, v in _stats(in_restore).items()}}


def _stretch_record(run) -> dict:
    """Run ``run()``, and return the ``high`` writer's record of its stretches: the worst stored one and
    the misses encoded again. The CLI keeps its writer to itself, so the stream encoders it makes are
    collected here as they are made."""
    made = []
    init = FaceVideo.__init__

    def collect(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    FaceVideo.__init__ = collect
    try:
        run()
    finally:
        FaceVideo.__init__ = init
    stretches = [s for video in made for s in video.stretches]
    if not stretches:
        return {}
    return {"worst_stretch_psnr_y_db": min(s[2] for s in stretches), "worst_stretch_ssim_y": min(s[3] for s in stretches),
            "stretch_crfs": [s[1] for s in stretches], "encoded_again": [list(m) for video in made for m in video.missed]}  # fmt: skip


def _check(code: int) -> None:
    assert code == 0


def measure(name: str, source: Path, work: Path, key: Path) -> list[dict]:
    rows = []
    plain = work / f"{name}_plain.mp4"
    start = time.perf_counter()
    assert main([str(source), "-o", str(plain), "-q", "--overwrite", "--key-file", str(key)]) == 0
    plain_s = time.perf_counter() - start
    for quality in ("high", "exact"):
        video, vault, restored = work / f"{name}_{quality}.mp4", work / f"{name}_{quality}.favault", work / f"{name}_{quality}_restored.mkv"
        start = time.perf_counter()
        args = [str(source), "-o", str(video), "-q", "--overwrite", "--key-file", str(key), "--vault", str(vault), "--vault-quality", quality]
        stretches = _stretch_record(lambda: _check(main(args)))
        run_s = time.perf_counter() - start
        assert main(["restore", str(video), "--vault", str(vault), "--key-file", str(key), "-o", str(restored), "--crf", "0", "-q", "--overwrite"]) == 0
        rows.append({
            "clip": name, "quality": quality, "video_bytes": video.stat().st_size, "vault_bytes": vault.stat().st_size,
            "vault_over_video": round(vault.stat().st_size / video.stat().st_size, 2),
            "run_s": round(run_s, 2), "run_without_vault_s": round(plain_s, 2), **restore_error(source, restored, vault, key),
            **luma_fidelity(source, vault, key), **stretches,
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def run(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--clips", default="hamilton,hamilton_720p,carphone,portrait")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        key = work / "vault.key"
        key.write_bytes(b"benchmark key, not secret 32 b!!")
        return [row for name in args.clips.split(",") for row in measure(name, CLIPS[name](work), work, key)]


if __name__ == "__main__":
    run()
