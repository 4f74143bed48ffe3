"""What an anonymized frame is scored on: did every face get covered, did the background survive,
and did the detector find the faces.

Face coverage ("was this face substantially altered?")
------------------------------------------------------
A face is **covered** when at least ``covered_fraction`` (90 %) of the informative pixels of its
face oval were altered, and **leaked** otherwise. Precisely:

1. The ground-truth box is cropped from the original and the anonymized frame and both crops are
   resized to ``canonical_px`` (64 px) square, grey. Measuring at one scale makes the verdict the
   same for a 40 px and a 400 px face: a fine mosaic on a large face (16 blocks across, still
   recognisable) stays "unaltered" at 64 px, while at full resolution it would destroy every
   pixel-level texture and count as covered.
2. Both crops get the same linear contrast stretch, taken from the original's scored oval (step 3;
   its 1st-99th percentile mapped to 0..255, at most ``max_contrast_gain`` = 8x). A face in shadow
   is as identifiable as a lit one once brightened, and without the stretch SSIM's stabilising
   constants call any change to a dark face small. From the oval, not the whole box: a bright
   corner (sky, a white collar or the head of someone in front) would otherwise set the stretch,
   leave a dim face's features below ``informative_std`` and make the verdict depend on the
   corner, not on the face (a fully blurred dim 36 px face scored 0.70 altered that way).
3. Only the oval inscribed in the box, shrunk to ``oval_scale`` (90 %), counts: face boxes are
   rectangles around an oval face, the corners hold hair and background (ellipse-masked
   anonymizers leave them alone on purpose), and the rim is where annotation conventions disagree.
4. A pixel is *altered* when the local SSIM (Wang et al. 2004, 7x7 Gaussian window, sigma 1.5)
   between original and output is below ``ssim_altered_below`` (0.85). SSIM rather than a plain
   pixel difference because a blur leaves a face's mean brightness almost unchanged while
   destroying its structure.
5. Only *informative* pixels are counted: those whose local standard deviation in the (stretched)
   original is at least ``informative_std`` = 0.03 * 255 = 7.65, the point where SSIM's structure
   term outweighs its stabiliser C2 and so measures structure rather than noise. A blur cannot
   change a flat patch of cheek, and such a patch carries no identity; counting it would call a
   thoroughly blurred face leaked. If fewer than 10 % of the oval is informative, all of it counts.

The 90 % bar makes a half-covered face (about 50-65 % altered) leaked, as it should be: half a face
is enough to recognise someone. The thresholds were set on 76 faces (the 640x360 test clip, which
has small, dark, soft faces, plus still photos), comparing original against processed copies
(``python benchmarks/coverage_calibration.py`` reproduces this table; the light filters without
the filters' minimum sigma / cell size, which would make them strong on these small faces):

=====================================  ======================  ==========================
processed copy                         altered fraction, mean  counted as covered
=====================================  ======================  ==========================
H.264 re-encode, CRF 23 / CRF 30       0.22 / 0.43             0 % / 1 %
``Blur()`` (sigma 0.125 x face width)  0.98                    99 %
``Mosaic()`` (8 blocks across)         0.99                    100 %
light blur (sigma 0.05 x width)        0.61                    5 %
light mosaic (16 blocks)               0.67                    1 %
left / top half blacked out            0.64 / 0.60             0 % / 0 %
=====================================  ======================  ==========================

Re-identification with a face-recognition model (:mod:`faceanon_video.eval.identity`) is the
complementary, model-based check.

Background damage
-----------------
The fraction of pixels outside every ground-truth face box scaled by ``margin_scale`` about its
centre (2x by default, so a padded ellipse mask or a lagging track box is not blamed) whose colour
changed by more than ``changed_above`` (24 of 255, after a
light 3x3 Gaussian on both frames so codec noise does not count). A frame that the pipeline
obscured entirely (fail-closed) scores ~100 %.

Detection recall and precision
------------------------------
Detected boxes are matched one-to-one to ground-truth boxes by the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) on IoU; a pair is a true positive when its IoU is at
least 0.5 (the PASCAL VOC criterion). Detections matched to an ignored ground-truth face are
neither true nor false positives, and ignored faces are never counted as missed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from faceanon_video.geometry import box_iou

__all__ = [
    "BackgroundDamage",
    "CoverageSettings",
    "DetectionCounts",
    "background_damage",
    "box_iou",
    "face_altered_fraction",
    "match_boxes",
]


@dataclass(frozen=True)
class CoverageSettings:
    """When a face counts as covered; see the module docstring for the reasoning."""

    #: Fraction of the face's informative pixels that must be altered. Higher is stricter: 0.9
    #: tolerates a thin unaltered rim (mask edge, feathering) but not an uncovered eye or mouth.
    covered_fraction: float = 0.9
    #: A pixel is altered when its local SSIM drops below this. Lower demands a more destructive
    #: change; higher starts to count heavy re-encoding as anonymization (see the table above).
    ssim_altered_below: float = 0.85
    #: Side of the square both crops are resized to before comparing. Smaller judges coarser
    #: structure (what identifies a face); larger also demands that fine texture be destroyed.
    canonical_px: int = 64
    #: Size of the scored oval relative to the box's inscribed oval. Below 1 leaves out the rim,
    #: where annotation conventions disagree (dlib's boxes include the jaw line and forehead,
    #: WIDER's are tighter) and which holds the face outline rather than its features.
    oval_scale: float = 0.9
    #: Grey-level standard deviation (7x7 window, at canonical size) for a pixel to be informative.
    informative_std: float = 0.03 * 255
    #: The most a dark, low-contrast face is brightened before comparing; more amplifies codec
    #: noise until re-encoded faces count as altered.
    max_contrast_gain: float = 8.0

    def __post_init__(self) -> None:
        if not 0 < self.covered_fraction <= 1:
            raise ValueError(f"covered_fraction must be in (0, 1], got {self.covered_fraction}")
        if not -1 < self.ssim_altered_below <= 1:
            raise ValueError(f"ssim_altered_below must be in (-1, 1], got {self.ssim_altered_below}")
        if not 0 < self.oval_scale <= 1.5:
            raise ValueError(f"oval_scale must be in (0, 1.5], got {self.oval_scale}")
        if self.max_contrast_gain < 1:
            raise ValueError(f"max_contrast_gain must be >= 1, got {self.max_contrast_gain}")
        if self.canonical_px < 16:
            raise ValueError(f"canonical_px must be >= 16, got {self.canonical_px}")


# SSIM's stabilising constants for 8-bit data (Wang et al. 2004: K1=0.01, K2=0.03, L=255).
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def ssim_map(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel SSIM of two same-sized grey float32 images, and the local standard deviation of ``a``.

    Gaussian-windowed statistics (7x7, sigma 1.5) as in the SSIM paper; hand-written with
    cv2.GaussianBlur rather than pulling in scikit-image for these few lines.
    """

    def blur(x):
        return cv2.GaussianBlur(x, (7, 7), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = np.maximum(blur(a * a) - mu_a * mu_a, 0)
    var_b = np.maximum(blur(b * b) - mu_b * mu_b, 0)
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2))
    return ssim, np.sqrt(var_a)


def _canonical_crop(bgr: np.ndarray, xyxy: np.ndarray, size: int) -> np.ndarray:
    h, w = bgr.shape[:2]
    x0, y0 = int(np.floor(max(xyxy[0], 0))), int(np.floor(max(xyxy[1], 0)))
    x1, y1 = int(np.ceil(min(xyxy[2], w))), int(np.ceil(min(xyxy[3], h)))
    crop = cv2.cvtColor(bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    # INTER_AREA when shrinking (averages, no aliasing); INTER_LINEAR when enlarging small faces.
    interp = cv2.INTER_AREA if crop.shape[0] * crop.shape[1] > size * size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp).astype(np.float32)


def _oval_mask(size: int, scale: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    c, r = size / 2, scale * size / 2
    return ((xx - c) / r) ** 2 + ((yy - c) / r) ** 2 <= 1.0


def face_altered_fraction(
    original_bgr: np.ndarray, anonymized_bgr: np.ndarray, xyxy: np.ndarray, settings: CoverageSettings = CoverageSettings()
) -> np.ndarray:
    """(n,) fraction of each face's informative oval pixels that were altered (see module docs).

    A face is covered when its fraction is ``>= settings.covered_fraction``. Boxes entirely outside
    the frame get NaN.
    """
    if original_bgr.shape != anonymized_bgr.shape:
        raise ValueError(f"frames differ in shape: {original_bgr.shape} vs {anonymized_bgr.shape}")
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    h, w = original_bgr.shape[:2]
    size = settings.canonical_px
    oval = _oval_mask(size, settings.oval_scale)
    out = np.full(len(xyxy), np.nan, np.float64)
    for i, box in enumerate(xyxy):
        if min(box[2], w) - max(box[0], 0) < 1 or min(box[3], h) - max(box[1], 0) < 1:
            continue
        a = _canonical_crop(original_bgr, box, size)
        b = _canonical_crop(anonymized_bgr, box, size)
        # Same stretch for both, from the original's scored oval: a face in shadow is identifiable
        # once brightened, however bright the box's corners are.
        lo, hi = np.percentile(a[oval], (1, 99))
        gain = 255.0 / max(hi - lo, 255.0 / settings.max_contrast_gain)
        a, b = (a - lo) * gain, (b - lo) * gain
        ssim, std_a = ssim_map(a, b)
        counted = oval & (std_a >= settings.informative_std)
        if counted.sum() < 0.1 * oval.sum():
            counted = oval
        out[i] = float((ssim[counted] < settings.ssim_altered_below).mean())
    return out


@dataclass
class BackgroundDamage:
    """How much of the frame far from every face was changed."""

    #: Fraction of far-from-face pixels whose colour changed by more than the threshold.
    damaged_fraction: float
    #: Mean absolute difference (0..255, all channels) over the far-from-face pixels.
    mean_abs_diff: float
    #: Number of far-from-face pixels (0 when faces fill the frame; then the two values are 0).
    pixels: int


def background_damage(
    original_bgr: np.ndarray,
    anonymized_bgr: np.ndarray,
    face_xyxy: np.ndarray,
    *,
    margin_scale: float = 2.0,
    changed_above: float = 24.0,
) -> BackgroundDamage:
    """Score changes outside the faces (see module docs). ``margin_scale`` trades blaming a padded
    mask (small values) against missing damage next to faces (large values)."""
    if original_bgr.shape != anonymized_bgr.shape:
        raise ValueError(f"frames differ in shape: {original_bgr.shape} vs {anonymized_bgr.shape}")
    h, w = original_bgr.shape[:2]
    far = np.ones((h, w), bool)
    for x0, y0, x1, y1 in np.asarray(face_xyxy, np.float32).reshape(-1, 4):
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * margin_scale / 2, (y1 - y0) * margin_scale / 2
        far[max(int(cy - hh), 0) : max(int(np.ceil(cy + hh)), 0), max(int(cx - hw), 0) : max(int(np.ceil(cx + hw)), 0)] = False
    n = int(far.sum())
    if n == 0:
        return BackgroundDamage(0.0, 0.0, 0)
    a = cv2.GaussianBlur(original_bgr, (3, 3), 0).astype(np.int16)
    b = cv2.GaussianBlur(anonymized_bgr, (3, 3), 0).astype(np.int16)
    diff = np.abs(a - b)
    changed = diff.max(axis=2) > changed_above
    return BackgroundDamage(float(changed[far].mean()), float(diff[far].mean()), n)


@dataclass
class DetectionCounts:
    """True/false positives and misses, summed over images; ``+`` adds two counts."""

    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        return DetectionCounts(
            self.true_positives + other.true_positives,
            self.false_positives + other.false_positives,
            self.false_negatives + other.false_negatives,
        )

    @property
    def recall(self) -> float:
        """Found faces / all (non-ignored) faces; NaN when there are no faces."""
        total = self.true_positives + self.false_negatives
        return self.true_positives / total if total else float("nan")

    @property
    def precision(self) -> float:
        """Correct boxes / all (non-ignored) boxes; NaN when nothing was detected."""
        total = self.true_positives + self.false_positives
        return self.true_positives / total if total else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "recall": self.recall, "precision": self.precision}


def match_boxes(
    gt_xyxy: np.ndarray,
    det_xyxy: np.ndarray,
    *,
    iou_threshold: float = 0.5,
    gt_ignore: np.ndarray | None = None,
) -> tuple[DetectionCounts, np.ndarray]:
    """Match detections to ground truth one-to-one (Hungarian on IoU).

    Returns the counts and ``matched`` (len(gt),) int: the detection index matched to each ground
    truth face, or -1.
    """
    gt = np.asarray(gt_xyxy, np.float32).reshape(-1, 4)
    det = np.asarray(det_xyxy, np.float32).reshape(-1, 4)
    ignore = np.zeros(len(gt), bool) if gt_ignore is None else np.asarray(gt_ignore, bool)
    matched = np.full(len(gt), -1, np.int64)
    if len(gt) and len(det):
        iou = box_iou(gt, det)
        # Pairs below the threshold are worth nothing, so the optimum never trades a valid match
        # for a larger sum of IoUs that includes an invalid one.
        iou[iou < iou_threshold] = 0.0
        rows, cols = linear_sum_assignment(-iou)
        keep = iou[rows, cols] > 0
        matched[rows[keep]] = cols[keep]
    det_used = np.zeros(len(det), bool)
    det_used[matched[matched >= 0]] = True
    tp = int(((matched >= 0) & ~ignore).sum())
    fn = int(((matched < 0) & ~ignore).sum())
    # A detection on an ignored face is neither right nor wrong; one that overlaps an ignored face
    # without being its match is still a false positive.
    fp = int((~det_used).sum())
    return DetectionCounts(tp, fp, fn), matched
