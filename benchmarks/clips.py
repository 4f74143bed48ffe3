"""Benchmark inputs, made at benchmark time in a temporary folder (nothing big is committed).

- ``resolution_clip(height)``: tests/data/short_hamilton_clip.mp4 (640x360, several real faces)
  re-encoded at 480p/720p/1080p;
- ``faces_clip(n)``: a synthetic clip with exactly ``n`` real face photos walking across face-free
  real video (``faceanon_video.testing.synthetic``), with ground truth.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from faceanon_video.eval.bench import scaled_clip
from faceanon_video.testing.synthetic import Actor, render_clip, write_clip

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
HAMILTON = DATA / "short_hamilton_clip.mp4"
#: Identities the synthetic renderer knows (see testing.synthetic._sprite_sources).
IDENTITIES = ("john_a", "two_people_right", "astronaut", "obama", "john_b", "lacamoire")
HEIGHTS = {"480p": 480, "720p": 720, "1080p": 1080}


def resolution_clip(work_dir: Path, height: int, max_frames: int | None = None) -> Path:
    path = Path(work_dir) / f"hamilton_{height}p_{max_frames or 'all'}.mp4"
    if not path.exists():
        scaled_clip(HAMILTON, path, height, max_frames=max_frames)
    return path


def faces_clip(work_dir: Path, n_faces: int, n_frames: int = 90, face_px: float = 44.0) -> tuple[Path, Path]:
    """``n_faces`` faces in a grid on 640x272 video, each drifting sideways by half a cell, so the
    tracker and detector see motion but faces never overlap."""
    video, gt = Path(work_dir) / f"faces_{n_faces}.mp4", Path(work_dir) / f"faces_{n_faces}.json"
    if video.exists() and gt.exists():
        return video, gt
    clip = render_clip(n_frames=n_frames, scenario=(_grid_actors(n_faces, 640, 272, face_px), []))
    write_clip(clip, video, gt)
    return video, gt


@lru_cache(maxsize=None)
def _grid_actors(n: int, width: int, height: int, face_px: float) -> list[Actor]:
    if n == 0:
        return []
    cols = max(1, min(n, int(width // (face_px * 1.6))))
    rows = -(-n // cols)
    cell_w, cell_h = width / cols, height / rows
    actors = []
    for k in range(n):
        r, c = divmod(k, cols)
        cx, cy = (c + 0.25) * cell_w, (r + 0.5) * cell_h
        size = min(face_px, 0.55 * cell_h)
        path = ((0.0, cx, cy, size), (1.0, cx + 0.5 * cell_w, cy, size))
        actors.append(Actor(IDENTITIES[k % len(IDENTITIES)], path))
    return actors


def gt_face_count(gt_path: Path) -> int:
    return sum(len(f["faces"]) for f in json.loads(Path(gt_path).read_text())["frames"])
