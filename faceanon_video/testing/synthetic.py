"""Synthetic clips with exact ground truth: real face photos composited onto real face-free video.

Real detectors fail in bursts exactly where anonymization matters most: a face blurred by motion,
in shadow, turned away, half hidden, tiny, or crossing another face. Real footage with per-frame
boxes for those moments is scarce, so this module makes it: face crops from ``tests/data/images``
are pasted, frame by frame, onto face-free frames of ``tests/data/bikes.mp4`` (frames 137-249 are a
street and a doorway with no faces), along scripted paths with scripted degradations, and the exact
face box of every visible face in every frame is recorded.

Ground truth JSON (read by ``faceanon_video.eval.annotations.read_gt_json``)::

    {"video": "synthetic.mp4", "fps": 25, "width": 640, "height": 272, "seed": 0,
     "identities": {"1": "johns/John_Salley/...jpg", ...},
     "frames": [{"index": i, "faces": [{"id": 1, "xyxy": [x0, y0, x1, y1],
                 "visible": 0.93, "size_px": 55.0, "conditions": ["crossing"], "ignore": false}]}]}

``xyxy`` is the face box (as YuNet draws it on the full-resolution source photo, then moved,
scaled and squeezed with the face), clipped to the frame. ``visible`` is the fraction of the face
as pasted (its box, inside the soft-edged head cut-out) that is on screen and not hidden by an
occluder or another face; a face with nothing visible is left out of its frame, and faces less than
``IGNORE_VISIBLE_BELOW`` visible are marked ``ignore`` (a sliver of cheek is neither leaked nor
found). ``size_px`` is the box height before clipping; ``conditions`` names what is happening to
that face in that frame: ``blur``, ``dim``, ``squeeze``, ``halfcrop``, ``small`` (< 24 px),
``occluded`` (partly hidden), ``truncated`` (partly off-screen), ``crossing``.

The default scenario (``default_scenario``) has six people over ``n_frames`` (default 90):

====  =======================  ===============================================================
 id   photo                    what happens
====  =======================  ===============================================================
 1    a johns chip             walks left to right along the top; crossed by 2 (behind it)
 2    two_people.jpg (right)   walks right to left along the top, in front of 1
 3    astronaut.png            speeds up to a run along the bottom (motion blur grows with speed),
                               then stands in shadow (dim light)
 4    obama.jpg                walks out of the right edge, comes back in later
 5    a johns chip, 26->20 px  small face wandering in the middle
 6    alex-lacamoire.png       turns its head (horizontal squeeze), is half cut (profile-like),
                               then walks behind a pillar (partial, then full occlusion)
====  =======================  ===============================================================

``seed`` picks which chip of each dlib identity is used and jitters paths (a walking bob), so a few
seeds give a few different clips of the same difficulty.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np

from faceanon_video.geometry import box_intersection, box_iou

__all__ = [
    "Actor",
    "Effect",
    "Occluder",
    "SyntheticClip",
    "default_scenario",
    "recall_scenario",
    "default_data_dir",
    "render_clip",
    "make_synthetic_clip",
    "write_clip",
    "BACKGROUND_FRAMES",
    "TrackingScore",
    "anonymized_mask",
    "score_tracks",
]

log = logging.getLogger(__name__)

#: Where the photos and bikes.mp4 are read from when no ``data_dir`` is given: ``$FACEANON_TEST_DATA``,
#: else the ``tests/data`` folder of a source checkout. The module ships in the wheel (evaluation and
#: benchmarks import it) but the data does not, so an installed copy needs one of the two.
DATA_DIR_ENV = "FACEANON_TEST_DATA"
#: bikes.mp4 frames with no faces and no shot change, in order (bikes.mp4 cuts at frames 30, 76,
#: 137, 187 and 242). Faces carried across a background cut would be a scene no real video has,
#: and the pipeline ends every track at a cut (``track.shots.ShotChangeDetector``).
BACKGROUND_FRAMES = range(187, 242)
BIKES_SIZE = (640, 272)
IGNORE_VISIBLE_BELOW = 0.4
#: Faces YuNet finds (score >= 0.7, full resolution) in each annotated VOC photo, left to right.
VOC_FACES = {"2007_007763": 7, "2008_002079": 6, "2008_001322": 3, "2008_001009": 2}
FPS = 25


@dataclass(frozen=True)
class Effect:
    """A degradation of one face over ``u`` in ``[start, end)`` (fractions of the clip, 0..1).

    kinds and ``strength`` at the peak: ``blur`` (motion blur along the direction of motion: the face
    moves ``strength`` frames' worth of its speed while the shutter is open, so 1.0 is a 360-degree
    shutter; blur is as strong as the motion is fast, as in a real camera), ``dim`` (brightness multiplier, plus sensor noise), ``squeeze`` (width
    multiplier: a head turning away), ``halfcrop`` (fraction of the face, from the left, that shows: a
    profile-like partial view), ``grey`` (colour removed; 1.0 is fully grey), ``rotate`` (in-plane head
    tilt, degrees at the peak), ``dash`` (a burst of horizontal motion blur, as from a camera pan, of
    ``strength`` face heights, whatever the face's own speed). Effects other than blur ramp in and out over the first and last quarter of their
    window, as light fades and heads turn gradually; the detector then fails in the middle of the
    window, not abruptly at its edges.
    """

    kind: str
    start: float
    end: float
    strength: float

    def active(self, u: float) -> bool:
        return self.start <= u < self.end

    def level(self, u: float) -> float:
        """0..1: how far the effect has ramped in at ``u`` (trapezoid)."""
        if not self.active(u):
            return 0.0
        ramp = 0.25 * (self.end - self.start)
        return float(min(1.0, (u - self.start) / ramp, (self.end - u) / ramp))

    def value(self, u: float) -> float:
        """The effect's parameter at ``u``: ``strength`` at the peak, neutral at the edges."""
        if self.kind == "blur":
            return self.strength if self.active(u) else 0.0
        if self.kind in ("grey", "rotate", "dash"):
            return self.strength * self.level(u)
        return 1.0 + (self.strength - 1.0) * self.level(u)


@dataclass(frozen=True)
class Actor:
    """One person: a photo, a path of keyframes ``(u, cx, cy, face_height_px)`` with ``u`` in 0..1
    (linear in between; absent outside the first and last keyframe), a depth and effects."""

    identity: str  # key into the sprite table (see ``_sprite_sources``)
    path: tuple[tuple[float, float, float, float], ...]
    z: int = 0  # higher is in front
    effects: tuple[Effect, ...] = ()
    tags: tuple[str, ...] = ()  # conditions recorded for every frame (e.g. "crossing")

    def at(self, u: float) -> tuple[float, float, float] | None:
        keys = np.array(self.path, np.float64)
        if u < keys[0, 0] or u > keys[-1, 0]:
            return None
        return tuple(float(np.interp(u, keys[:, 0], keys[:, i])) for i in (1, 2, 3))


@dataclass(frozen=True)
class Occluder:
    """A textured rectangle drawn in front of every face, present for ``u`` in ``[start, end)``."""

    xyxy: tuple[int, int, int, int]
    start: float = 0.0
    end: float = 1.01
    #: bikes.mp4 frame whose pixels fill the rectangle (a real texture, not a flat colour).
    texture_frame: int = 150


@dataclass
class SyntheticClip:
    frames: list[np.ndarray]  # BGR uint8
    gt: dict  # the ground-truth document (see module docstring)
    #: Per frame, (H, W) uint8: which face (id) each pixel shows, 0 for none. Lets a scorer ignore
    #: the hidden part of a partly occluded face. Kept in memory only (not in the JSON).
    visible_ids: list[np.ndarray] = field(default_factory=list)

    @property
    def gt_frames(self) -> list[dict]:
        return self.gt["frames"]

    def boxes(self, index: int, include_ignored: bool = False) -> tuple[np.ndarray, list[int]]:
        """(n, 4) GT boxes and their ids in frame ``index``."""
        faces = [f for f in self.gt["frames"][index]["faces"] if include_ignored or not f["ignore"]]
        return np.array([f["xyxy"] for f in faces], np.float32).reshape(-1, 4), [f["id"] for f in faces]


def default_data_dir() -> Path:
    """The data folder (see ``DATA_DIR_ENV``); a clear error if there is none."""
    configured = os.environ.get(DATA_DIR_ENV)
    path = Path(configured) if configured else Path(__file__).resolve().parents[2] / "tests" / "data"
    if not (path / "bikes.mp4").is_file():
        raise FileNotFoundError(
            f"synthetic clips need the test data folder (bikes.mp4, images/): {path} has none; "
            f"pass data_dir= or set {DATA_DIR_ENV} to a checkout's tests/data"
        )
    return path


# -- sprites -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sprite:
    bgr: np.ndarray  # float32
    alpha: np.ndarray  # float32 0..1
    face_xyxy: np.ndarray  # face box in sprite pixels
    source: str


def _sprite_sources(data_dir: Path, rng: np.random.Generator) -> dict[str, tuple[Path, int]]:
    """identity key -> (image, which face in it, left to right)."""
    images = data_dir / "images"
    johns = sorted((images / "identities" / "johns").iterdir())

    def chip(person: Path) -> Path:
        files = sorted(person.glob("*.jpg"))
        return files[int(rng.integers(len(files)))]

    return {
        "john_a": (chip(johns[0]), 0),
        "john_b": (chip(johns[4]), 0),
        "two_people_right": (images / "two_people.jpg", 1),
        "astronaut": (images / "astronaut.png", 0),
        "obama": (images / "identities" / "obama.jpg", 0),
        "lacamoire": (images / "identities" / "alex-lacamoire.png", 0),
        # Faces the six-person scene does not use (``recall_scenario``): three more dlib identities,
        # Miranda, the other person of two_people.jpg, and small, soft faces of real group photos
        # (PASCAL VOC, natively 37-76 px, some turned or tilted).
        "savage": (chip(johns[1]), 0),
        "schneider": (chip(johns[2]), 0),
        "shimkus": (chip(johns[3]), 0),
        "miranda": (images / "identities" / "lin-manuel-miranda.png", 0),
        "two_people_left": (images / "two_people.jpg", 0),
        **{f"voc_{name}_{k}": (images / "annotated" / f"{name}.jpg", k) for name, n in VOC_FACES.items() for k in range(n)},
    }


@lru_cache(maxsize=64)
def _face_boxes(path: str) -> np.ndarray:
    """Face boxes (xyxy, left to right) in a source photo, found by YuNet at full resolution on the
    pristine photo: the reference every degraded copy in the clip is scored against."""
    from faceanon_video.detect.yunet import YuNetDetector

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    found = YuNetDetector(threshold=0.7, min_face_px=0).detect(bgr)
    if not len(found):
        raise ValueError(f"no face found in sprite source {path}")
    return found.xyxy[np.argsort(found.xyxy[:, 0])]


def _make_sprite(path: Path, which: int) -> _Sprite:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    face = _face_boxes(str(path))[which].astype(np.float64)
    w, h = face[2] - face[0], face[3] - face[1]
    # Head with some hair and chin around the face box, as a person would appear in a scene.
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2 - 0.05 * h
    x0, x1 = int(max(0, cx - 0.75 * w)), int(min(bgr.shape[1], cx + 0.75 * w))
    y0, y1 = int(max(0, cy - 0.8 * h)), int(min(bgr.shape[0], cy + 0.8 * h))
    crop = bgr[y0:y1, x0:x1].astype(np.float32)
    alpha = np.zeros(crop.shape[:2], np.float32)
    center = (crop.shape[1] // 2, crop.shape[0] // 2)
    cv2.ellipse(alpha, center, (crop.shape[1] // 2, crop.shape[0] // 2), 0, 0, 360, 1.0, -1)
    feather = max(3, int(0.08 * min(crop.shape[:2])) | 1)
    alpha = cv2.GaussianBlur(alpha, (feather, feather), 0)
    return _Sprite(crop, alpha, face - np.array([x0, y0, x0, y0]), str(path))


# -- scenario ----------------------------------------------------------------------------------


def default_scenario(width: int = 640, height: int = 272) -> tuple[list[Actor], list[Occluder]]:
    """The six-person scene of the module docstring, laid out for ``width`` x ``height``."""
    W, H = width, height
    pillar = (int(0.594 * W), int(0.35 * H), int(0.672 * W), int(0.8 * H))
    actors = [
        Actor("john_a", ((0.0, 0.12 * W, 0.27 * H, 54), (1.0, 0.88 * W, 0.27 * H, 56)), z=0, tags=("crossing",)),
        Actor("two_people_right", ((0.0, 0.88 * W, 0.29 * H, 60), (1.0, 0.12 * W, 0.28 * H, 62)), z=1, tags=("crossing",)),
        Actor(
            "astronaut",  # strolls, speeds up to a run (blurred as much as it is fast), then stands in shadow
            _speed_path(W, H, x0_px=30, y=0.73, face_h=44, speeds=[(0, 1.5), (17, 2.0), (28, 16), (31, 16), (40, 0.3), (89, 0.2)]),
            effects=(Effect("blur", 0.0, 1.01, 1.0), Effect("dim", 0.56, 0.76, 0.06)),
        ),
        Actor(
            "obama",
            ((0.0, 0.74 * W, 0.74 * H, 50), (0.26, 1.07 * W, 0.74 * H, 50), (0.50, 1.07 * W, 0.72 * H, 50),
             (0.78, 0.82 * W, 0.72 * H, 50), (1.0, 0.78 * W, 0.73 * H, 50)),
        ),  # fmt: skip
        Actor("john_b", ((0.0, 0.16 * W, 0.47 * H, 26), (0.5, 0.27 * W, 0.50 * H, 24), (1.0, 0.38 * W, 0.47 * H, 20))),
        Actor(
            "lacamoire",
            ((0.0, 0.90 * W, 0.55 * H, 52), (1.0, 0.53 * W, 0.56 * H, 52)),
            effects=(Effect("squeeze", 0.06, 0.24, 0.45), Effect("halfcrop", 0.27, 0.43, 0.33)),
        ),
    ]
    return actors, [Occluder(pillar)]


def recall_scenario(width: int, height: int, n_frames: int) -> tuple[list[Actor], list[Occluder]]:
    """Twelve people with small faces (24-40 px, two larger) for the recall benchmark, at any frame
    size (face sizes are in pixels, positions in fractions of the frame), none of them a face of the
    six-person scene. People walk at real speeds (px per frame, so a shorter clip shows less of the
    same walk, not a faster one) and enter or leave through every edge:

    ========================  ====  ===========================================================
    photo                     px    what happens
    ========================  ====  ===========================================================
    johns/John_Savage         26    grey-scale; walks in through the left edge
    johns/John_Schneider      28    walks in through the right edge; dim burst
    johns/John_Shimkus        24    comes down through the top edge, stops, tilts its head +35 deg
    lin-manuel-miranda        40    comes up through the bottom edge; turns to profile
    two_people.jpg (left)     32    walks out through the right edge and back in
    VOC 2007_007763 #0        30    tilts -35 deg while walking left
    VOC 2007_007763 #1        24    walks out through the top edge
    VOC 2008_002079 #0        36    dim burst, then walks out through the bottom edge
    VOC 2008_002079 #1        28    motion-blur burst (camera pan)
    VOC 2008_002079 #2        26    grey-scale and dim
    VOC 2008_001322 #0        64    head turn to profile (squeeze, then half face)
    VOC 2008_001009 #0        80    walks in through the left edge at the bottom, tilted +30 deg
    ========================  ====  ===========================================================
    """
    W, H, last = width, height, max(n_frames - 1, 1)

    def walk(x0, y0, vx, vy, size, u0=0.0, u1=1.0):
        """Start at (x0, y0) px at ``u0`` and move (vx, vy) px per frame until ``u1``."""
        frames = (u1 - u0) * last
        return ((u0, x0, y0, size), (u1, x0 + vx * frames, y0 + vy * frames, size))

    def leave_at(edge_px, u, v):
        """Start position so that moving at ``v`` px/frame reaches ``edge_px`` at ``u``."""
        return edge_px - v * u * last

    burst = lambda kind, start, end, strength: Effect(kind, start, end, strength)  # noqa: E731
    always = lambda kind, strength: Effect(kind, -0.5, 1.5, strength)  # noqa: E731 (full level over 0..1)
    actors = [
        Actor("savage", walk(-14, 0.30 * H, 2.5, 0.0, 26), effects=(always("grey", 1.0),)),
        Actor("schneider", walk(W + 15, 0.45 * H, -3.0, 0.0, 28), effects=(burst("dim", 0.35, 0.75, 0.15),)),
        Actor(
            "shimkus",
            ((0.0, 0.30 * W, -13, 24), (0.35, 0.30 * W, -13 + 2.0 * 0.35 * last, 24), (1.0, 0.32 * W, -13 + 2.0 * 0.35 * last, 24)),
            effects=(burst("rotate", 0.45, 0.95, 35.0),),
        ),
        Actor(
            "miranda",
            walk(0.62 * W, H + 22, 0.0, -2.0, 40),
            effects=(burst("squeeze", 0.25, 0.55, 0.45), burst("halfcrop", 0.55, 0.9, 0.4)),
        ),
        Actor(
            "two_people_left",
            (
                (0.0, leave_at(W + 18, 0.45, 3.0), 0.62 * H, 32),
                (0.45, W + 18, 0.62 * H, 32),
                (0.6, W + 18, 0.60 * H, 32),
                (1.0, W + 18 - 3.0 * 0.4 * last, 0.60 * H, 32),
            ),
        ),
        Actor("voc_2007_007763_0", walk(0.55 * W, 0.20 * H, -1.5, 0.0, 30), effects=(burst("rotate", 0.2, 0.7, -35.0),)),
        Actor("voc_2007_007763_1", walk(0.85 * W, leave_at(-14, 0.85, -1.5), 0.0, -1.5, 24)),
        Actor(
            "voc_2008_002079_0",
            walk(0.15 * W, leave_at(H + 20, 0.9, 2.0), 0.0, 2.0, 36),
            effects=(burst("dim", 0.15, 0.55, 0.12),),
        ),
        Actor("voc_2008_002079_1", walk(0.42 * W, 0.40 * H, 1.0, 0.5, 28), effects=(burst("dash", 0.35, 0.65, 0.6),)),
        Actor("voc_2008_002079_2", walk(0.75 * W, 0.33 * H, -1.0, 0.0, 26), effects=(always("grey", 1.0), burst("dim", 0.3, 0.8, 0.3))),
        Actor(
            "voc_2008_001322_0",
            walk(0.30 * W, 0.62 * H, 1.0, 0.0, 64),
            effects=(burst("squeeze", 0.1, 0.45, 0.45), burst("halfcrop", 0.5, 0.85, 0.4)),
        ),
        Actor("voc_2008_001009_0", walk(-40, 0.85 * H, 3.0, 0.0, 80), effects=(always("rotate", 30.0),)),
    ]
    return actors, []


def _speed_path(W, H, x0_px, y, face_h, speeds, n_ref=90) -> tuple[tuple[float, float, float, float], ...]:
    """A left-to-right path from a speed profile: ``speeds`` are (frame, px/frame) points of an
    ``n_ref``-frame, 640-wide clip, eased in between (smoothstep), so speed changes like a body's,
    not in jumps. Positions scale with ``W``."""
    keys = np.array(speeds, np.float64)
    frames = np.arange(n_ref)
    seg = np.clip(np.searchsorted(keys[:, 0], frames, side="right") - 1, 0, len(keys) - 2)
    t = np.clip((frames - keys[seg, 0]) / (keys[seg + 1, 0] - keys[seg, 0]), 0, 1)
    ease = t * t * (3 - 2 * t)
    speed = keys[seg, 1] + (keys[seg + 1, 1] - keys[seg, 1]) * ease
    x = x0_px + np.concatenate([[0.0], np.cumsum(speed[:-1])])
    return tuple((f / (n_ref - 1), xi / 640 * W, y * H, face_h) for f, xi in zip(frames, x))


# -- rendering ---------------------------------------------------------------------------------


def _motion_blur(image: np.ndarray, length_px: float, angle_rad: float) -> np.ndarray:
    n = max(3, int(round(length_px)) | 1)
    kernel = np.zeros((n, n), np.float32)
    c = n // 2
    dx, dy = np.cos(angle_rad) * c, np.sin(angle_rad) * c
    cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
    return cv2.filter2D(image, -1, kernel / kernel.sum())


def _load_backgrounds(data_dir: Path, n: int, extra: set[int], size: tuple[int, int] = BIKES_SIZE) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """``n`` background frames, plus the bikes.mp4 frames in ``extra`` (occluder textures), scaled
    and centre-cropped to cover ``size``."""
    run = list(BACKGROUND_FRAMES)
    # Ping-pong through the face-free run for clips longer than it.
    cycle = run + run[-2:0:-1]
    wanted = {cycle[i % len(cycle)] for i in range(n)} | extra
    frames = {}
    with av.open(str(data_dir / "bikes.mp4")) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames[index] = _cover(frame.to_ndarray(format="bgr24"), size)
            if index >= max(wanted):
                break
    return [frames[cycle[i % len(cycle)]] for i in range(n)], frames


def _cover(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``bgr`` scaled (keeping its aspect) and centre-cropped to exactly ``size`` (width, height)."""
    width, height = size
    if bgr.shape[1::-1] == (width, height):
        return bgr
    scale = max(width / bgr.shape[1], height / bgr.shape[0])
    scaled = cv2.resize(bgr, (max(width, round(bgr.shape[1] * scale)), max(height, round(bgr.shape[0] * scale))), interpolation=cv2.INTER_CUBIC)
    y0, x0 = (scaled.shape[0] - height) // 2, (scaled.shape[1] - width) // 2
    return np.ascontiguousarray(scaled[y0 : y0 + height, x0 : x0 + width])


def render_clip(
    n_frames: int = 90,
    seed: int = 0,
    data_dir: str | Path | None = None,
    scenario: tuple[list[Actor], list[Occluder]] | None = None,
    size: tuple[int, int] | None = None,
) -> SyntheticClip:
    """Render a clip in memory: frames plus the ground-truth document.

    Paths span the whole clip, so fewer frames mean faster motion: the default scenario is meant
    for ~90 frames at 25 fps (walking speeds, a sprint of 16 px/frame); 30 frames triples every speed.
    ``size`` (width, height): the frame size; bikes.mp4's 640x272 frames are scaled up to cover it
    (a soft background, but faces are pasted at their own resolution).
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    rng = np.random.default_rng(seed)
    width, height = size or BIKES_SIZE
    actors, occluders = scenario or default_scenario(width, height)
    backgrounds, all_frames = _load_backgrounds(data_dir, n_frames, {o.texture_frame for o in occluders}, (width, height))
    sources = _sprite_sources(data_dir, rng)
    sprites = {a.identity: _make_sprite(*sources[a.identity]) for a in actors}
    bob_phase = rng.uniform(0, 2 * np.pi, len(actors))
    bob_px = rng.uniform(0.5, 2.0, len(actors))
    noise_rng = np.random.default_rng(seed + 1)

    frames, gt_frames, visible_ids = [], [], []
    for i in range(n_frames):
        u = i / max(n_frames - 1, 1)
        canvas = backgrounds[i].astype(np.float32)
        # Which face owns each pixel: actor index, or -1 where a face is hidden by a sprite/occluder.
        owner = np.full((height, width), -1, np.int32)
        placed = {}
        for k in sorted(range(len(actors)), key=lambda k: actors[k].z):
            actor = actors[k]
            pose = actor.at(u)
            if pose is None:
                continue
            cx, cy, face_h = pose
            cy += bob_px[k] * np.sin(bob_phase[k] + 0.5 * i)  # walking bob
            velocity = _velocity(actor, u, n_frames)
            face_xyxy, own_px, conditions = _paste(
                canvas, owner, k, sprites[actor.identity], (cx, cy, face_h), velocity, actor.effects, u, noise_rng
            )
            placed[k] = (face_xyxy, own_px, face_h, conditions + list(actor.tags))
        for occ in occluders:
            if occ.start <= u < occ.end:
                x0, y0, x1, y1 = occ.xyxy
                canvas[y0:y1, x0:x1] = all_frames[occ.texture_frame][y0:y1, x0:x1]
                owner[y0:y1, x0:x1] = -1
        frames.append(np.clip(canvas, 0, 255).astype(np.uint8))
        visible_ids.append((owner + 1).astype(np.uint8))
        gt_frames.append({"index": i, "faces": _visible_faces(placed, owner, width, height)})

    gt = {
        "video": None,
        "fps": FPS,
        "width": width,
        "height": height,
        "seed": seed,
        "identities": {str(k + 1): _relative(sprites[a.identity].source, data_dir) for k, a in enumerate(actors)},
        "frames": gt_frames,
    }
    return SyntheticClip(frames=frames, gt=gt, visible_ids=visible_ids)


def _relative(path: str, data_dir: Path) -> str:
    try:
        return str(Path(path).relative_to(data_dir))
    except ValueError:
        return path


def _velocity(actor: Actor, u: float, n_frames: int) -> np.ndarray:
    du = 1.0 / max(n_frames - 1, 1)
    a, b = actor.at(max(u - du, actor.path[0][0])), actor.at(min(u + du, actor.path[-1][0]))
    return (np.array(b[:2]) - np.array(a[:2])) / 2.0  # px per frame (central difference)


def _paste(canvas, owner, k, sprite: _Sprite, pose, velocity, effects, u, noise_rng) -> tuple[np.ndarray, tuple[int, int], list[str]]:
    """Composite one face; return its face box in frame coordinates (unclipped), how many face
    pixels it pasted (in all, and on screen) and the conditions."""
    cx, cy, face_h = pose
    scale = face_h / (sprite.face_xyxy[3] - sprite.face_xyxy[1])
    sx, sy = scale, scale
    conditions = []
    active = [e for e in effects if e.active(u)]
    blur_px = 0.0
    for e in active:
        if e.kind == "squeeze":
            sx *= e.value(u)
        if e.kind == "blur":
            blur_px = e.value(u) * float(np.hypot(*velocity))
            if blur_px < 0.1 * face_h:
                continue  # too little to matter: not recorded as a condition
        if e.kind == "dash":
            blur_px = e.value(u) * face_h
            velocity = np.array([1.0, 0.0])
            if blur_px < 0.1 * face_h:
                continue
        if e.kind in ("grey", "rotate") and abs(e.value(u)) < (0.3 if e.kind == "grey" else 8):
            continue
        conditions.append(_CONDITION.get(e.kind, e.kind))
    if face_h < 24:
        conditions.append("small")
    h_px, w_px = max(2, int(round(sprite.bgr.shape[0] * sy))), max(2, int(round(sprite.bgr.shape[1] * sx)))
    img = cv2.resize(sprite.bgr, (w_px, h_px), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(sprite.alpha, (w_px, h_px), interpolation=cv2.INTER_AREA)
    face = sprite.face_xyxy * np.array([w_px / sprite.bgr.shape[1], h_px / sprite.bgr.shape[0]] * 2)
    for e in active:
        if e.kind == "halfcrop":
            cut = face[0] + e.value(u) * (face[2] - face[0])
            ramp = np.clip((cut - np.arange(w_px) + 1.5) / 3.0, 0, 1)  # 3 px feathered edge
            alpha = alpha * ramp[None, :]
            face = face.copy()
            face[2] = cut
        elif e.kind in ("blur", "dash") and blur_px >= 2:
            angle = float(np.arctan2(velocity[1], velocity[0]))
            img = _motion_blur(img * alpha[..., None], blur_px, angle)
            alpha = _motion_blur(alpha, blur_px, angle)
            img = img / np.maximum(alpha[..., None], 1e-3)
        elif e.kind == "dim":
            img = img * e.value(u) + noise_rng.normal(0, 3.0, img.shape).astype(np.float32)
        elif e.kind == "grey":
            grey = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)[..., None]
            img = img + e.value(u) * (grey - img)
        elif e.kind == "rotate" and e.value(u):
            img, alpha, face = _rotate(img, alpha, face, e.value(u))
    # Place so the face centre lands on (cx, cy).
    ox = int(round(cx - (face[0] + face[2]) / 2))
    oy = int(round(cy - (face[1] + face[3]) / 2))
    H, W = canvas.shape[:2]
    x0, y0, x1, y1 = max(0, ox), max(0, oy), min(W, ox + w_px), min(H, oy + h_px)
    if x1 > x0 and y1 > y0:
        a = alpha[y0 - oy : y1 - oy, x0 - ox : x1 - ox, None]
        region = canvas[y0:y1, x0:x1]
        region[:] = a * img[y0 - oy : y1 - oy, x0 - ox : x1 - ox] + (1 - a) * region
        covered = a[..., 0] > 0.5
        owner[y0:y1, x0:x1][covered] = -1  # this head hides whatever face was behind it
        face_mask = np.zeros((h_px, w_px), bool)
        fx0, fy0, fx1, fy1 = np.round(face).astype(int)
        face_mask[max(fy0, 0) : fy1, max(fx0, 0) : fx1] = True
        face_mask &= alpha > 0.5
        # Visibility is relative to the face's own pasted footprint, off-screen parts included.
        own_px = int(face_mask.sum())
        on_screen = face_mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        owner[y0:y1, x0:x1][on_screen] = k
        on_screen_px = int(on_screen.sum())
        if on_screen_px < 0.98 * own_px:
            conditions.append("truncated")
    else:
        own_px, on_screen_px = max(int((face[2] - face[0]) * (face[3] - face[1])), 1), 0
    return face + np.array([ox, oy, ox, oy]), (own_px, on_screen_px), conditions


_CONDITION = {"rotate": "tilt", "dash": "blur"}


def _rotate(img: np.ndarray, alpha: np.ndarray, face: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tilt a sprite about its face centre; the new face box bounds the tilted face oval."""
    centre = ((face[0] + face[2]) / 2, (face[1] + face[3]) / 2)
    matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    size = img.shape[1::-1]
    img = cv2.warpAffine(img, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(alpha, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
    a, b, t = (face[2] - face[0]) / 2, (face[3] - face[1]) / 2, np.deg2rad(degrees)
    half = np.array([np.hypot(a * np.cos(t), b * np.sin(t)), np.hypot(a * np.sin(t), b * np.cos(t))])
    return img, alpha, np.concatenate([np.array(centre) - half, np.array(centre) + half])


def _visible_faces(placed: dict, owner: np.ndarray, width: int, height: int) -> list[dict]:
    faces = []
    counts = np.bincount(owner[owner >= 0].ravel(), minlength=max(placed, default=-1) + 1)
    for k, (xyxy, (own_px, on_screen_px), face_h, conditions) in sorted(placed.items()):
        visible = float(counts[k] / max(own_px, 1)) if k < len(counts) else 0.0
        clipped = np.clip(xyxy, 0, [width, height, width, height])
        if visible <= 0.0 or clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            continue
        if k < len(counts) and counts[k] < 0.98 * on_screen_px:
            conditions = conditions + ["occluded"]
        faces.append(
            {
                "id": k + 1,
                "xyxy": [round(float(v), 2) for v in clipped],
                "visible": round(min(visible, 1.0), 3),
                "size_px": round(float(face_h), 1),
                "conditions": sorted(set(conditions)),
                "ignore": visible < IGNORE_VISIBLE_BELOW,
            }
        )
    return faces


# -- scoring ---------------------------------------------------------------------------------


@dataclass
class TrackingScore:
    """How well per-frame outputs (tracker boxes) covered a clip's ground-truth faces.

    A face is *leaked* in a frame when less than ``covered_fraction`` of its visible oval (the
    ellipse inscribed in its box, minus parts hidden by occluders) lies inside the anonymized area,
    which is rebuilt from the output boxes exactly as the anonymizers build it (``face_regions``).
    This is geometric: it scores where the pipeline *would* paint, so it can run without an
    anonymizer. ``faceanon_video.eval.metrics`` scores the painted pixels instead.
    """

    face_frames: int = 0  # scored GT faces of at least min_face_px
    leaked: list[dict] = field(default_factory=list)
    small_face_frames: int = 0  # visible faces below min_face_px (reported, not in the target)
    small_leaked: list[dict] = field(default_factory=list)
    id_switches: list[dict] = field(default_factory=list)
    false_positive_boxes: int = 0  # output boxes on no face at all (box-frames)

    @property
    def leak_rate(self) -> float:
        return len(self.leaked) / self.face_frames if self.face_frames else 0.0

    def summary(self) -> dict:
        return {
            "face_frames": self.face_frames,
            "leaked": len(self.leaked),
            "leak_rate": round(self.leak_rate, 4),
            "small_face_frames": self.small_face_frames,
            "small_leaked": len(self.small_leaked),
            "id_switches": len(self.id_switches),
            "false_positive_boxes": self.false_positive_boxes,
        }


def anonymized_mask(faces, shape: tuple[int, ...], mask_scale: float = 1.3, mask: str = "ellipse") -> np.ndarray:
    """(H, W) bool: where an anonymizer would paint for these boxes."""
    from faceanon_video.anonymize.regions import face_regions

    painted = np.zeros(shape[:2], bool)
    for region in face_regions(faces, shape, mask_scale=mask_scale, shape=mask):
        view = painted[region.slices]
        view |= True if region.mask is None else region.mask > 0
    return painted


def _oval(xyxy: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    oval = np.zeros(shape[:2], np.uint8)
    x0, y0, x1, y1 = xyxy
    center = (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2)))
    axes = (max(1, int(round((x1 - x0) / 2))), max(1, int(round((y1 - y0) / 2))))
    cv2.ellipse(oval, center, axes, 0, 0, 360, 1, -1)
    return oval.astype(bool)


def score_tracks(
    clip: SyntheticClip,
    outputs: list,
    mask_scale: float = 1.3,
    mask: str = "ellipse",
    covered_fraction: float = 0.9,
    min_face_px: float = 24,
) -> TrackingScore:
    """Leaks, id switches and false positives of per-frame ``Detections`` (one per clip frame).

    Id switches follow CLEAR-MOT (Bernardin & Stiefelhagen 2008): each frame, a face stays paired
    with last frame's track if that track's box still covers at least half of the face; the other
    faces and boxes are paired one-to-one by IoU (Hungarian) under the same gate. A switch is a face
    paired with a different track id than the last time it was paired. A face that leaves and comes back under a new id counts as a switch too.
    """
    from scipy.optimize import linear_sum_assignment

    score = TrackingScore()
    last_track: dict[int, int] = {}
    for i, (gt_frame, faces) in enumerate(zip(clip.gt_frames, outputs)):
        shape = clip.frames[i].shape
        painted = anonymized_mask(faces, shape, mask_scale, mask)
        gt_faces = gt_frame["faces"]
        gt_xyxy = np.array([f["xyxy"] for f in gt_faces], np.float64).reshape(-1, 4)
        for f, xyxy in zip(gt_faces, gt_xyxy):
            if f["ignore"]:
                continue
            oval = _oval(xyxy, shape)
            if clip.visible_ids:
                shown = oval & (clip.visible_ids[i] == f["id"])
                oval = shown if shown.sum() >= 0.25 * oval.sum() else oval
            coverage = float(painted[oval].mean()) if oval.any() else 1.0
            small = f["size_px"] < min_face_px
            if small:
                score.small_face_frames += 1
            else:
                score.face_frames += 1
            if coverage < covered_fraction:
                record = {"frame": i, "id": f["id"], "coverage": round(coverage, 3), "size_px": f["size_px"], "conditions": f["conditions"]}
                (score.small_leaked if small else score.leaked).append(record)
        # Pair faces with output boxes (CLEAR-MOT): a face keeps last frame's track while that track
        # still covers at least half of it; the others are paired by IoU (Hungarian) under that gate.
        inter = box_intersection(gt_xyxy, faces.xyxy)
        gt_area = np.maximum(np.prod(gt_xyxy[:, 2:] - gt_xyxy[:, :2], axis=1), 1e-9)
        out_area = np.maximum(np.prod(faces.xyxy[:, 2:] - faces.xyxy[:, :2], axis=1), 1e-9)
        valid = inter / gt_area[:, None] >= 0.5
        iou = np.where(valid, box_iou(gt_xyxy, faces.xyxy), 0.0)
        if faces.track_id is not None and iou.size:
            ids = faces.track_id.tolist()
            for r, f in enumerate(gt_faces):
                prev = last_track.get(f["id"])
                if prev in ids and valid[r, ids.index(prev)]:
                    iou[r, :] = 0.0
                    iou[:, ids.index(prev)] = 0.0
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] <= 0.0:
                    continue
                gid, tid = gt_faces[r]["id"], ids[c]
                if gid in last_track and last_track[gid] != tid:
                    score.id_switches.append(
                        {"frame": i, "id": gid, "from": last_track[gid], "to": tid, "conditions": gt_faces[r]["conditions"]}
                    )
                last_track[gid] = tid
        on_face = (inter / out_area[None, :]).max(axis=0, initial=0.0) >= 0.1
        score.false_positive_boxes += int((~on_face).sum())
    return score


# -- files -------------------------------------------------------------------------------------


def write_clip(clip: SyntheticClip, video_path: str | Path, gt_path: str | Path, crf: int = 16) -> None:
    """Encode the frames as H.264 (near-lossless, so compression does not change what is detectable)
    and write the ground-truth JSON next to it, naming the video relative to the JSON."""
    video_path, gt_path = Path(video_path), Path(gt_path)
    height, width = clip.frames[0].shape[:2]
    with av.open(str(video_path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for bgr in clip.frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")))
        container.mux(stream.encode())
    doc = dict(clip.gt, video=_relative_to(video_path, gt_path.parent))
    gt_path.write_text(json.dumps(doc))


def _relative_to(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def make_synthetic_clip(
    out_dir: str | Path, seed: int = 0, n_frames: int = 90, data_dir: str | Path | None = None, name: str = "synthetic"
) -> tuple[Path, Path]:
    """Render the default scenario and write ``NAME.mp4`` + ``NAME.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = render_clip(n_frames=n_frames, seed=seed, data_dir=data_dir)
    video_path, gt_path = out_dir / f"{name}.mp4", out_dir / f"{name}.json"
    write_clip(clip, video_path, gt_path)
    return video_path, gt_path
