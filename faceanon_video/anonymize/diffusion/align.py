"""Face crops in and out: 5-point alignment, a feathered face-shaped mask, colour match, paste-back.

The published model was trained on FFHQ/CelebA-HQ-style crops, so faces are warped with a
similarity transform (rotation, uniform scale, translation: no shear, the face keeps its shape)
that puts the 5 landmarks where FFHQ's alignment puts them, the generated crop is warped back
with the inverse, and only a soft face-shaped region of it replaces the frame's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceanon_video.types import Detections

__all__ = [
    "TEMPLATE_5PT",
    "BOX_LANDMARKS_5PT",
    "AlignedFaces",
    "similarity_from_landmarks",
    "landmarks_or_box",
    "align_faces",
    "face_mask",
    "match_colour",
    "paste_faces",
]

#: Where the 5 landmarks go in the aligned crop, as fractions of its side: right eye, left eye,
#: nose, right and left mouth corner (types.Detections order). FFHQ's alignment (Karras et al.
#: 2019) makes the crop 4x the eye distance with its centre 0.1 of the eye-to-mouth vector below
#: the eyes; the nose and mouth positions relative to the eyes are the average face proportions
#: of the common 5-point ArcFace template (mouth 0.83 and eye-to-mouth 1.155 eye distances).
TEMPLATE_5PT = np.array(
    [[0.375, 0.471], [0.625, 0.471], [0.500, 0.614], [0.396, 0.760], [0.604, 0.760]], np.float32
)

#: Median landmark positions inside a YuNet box, as fractions of the box (measured on the 82
#: faces YuNet finds in tests/data/images), for faces whose landmarks are unknown.
BOX_LANDMARKS_5PT = np.array(
    [[0.27, 0.35], [0.75, 0.35], [0.51, 0.55], [0.31, 0.72], [0.71, 0.72]], np.float32
)


@dataclass
class AlignedFaces:
    """Aligned crops and the frame -> crop transforms, one row per face."""

    pixels: np.ndarray  # (n, S, S, 3) uint8, channels in the frame's order
    frame_to_crop: np.ndarray  # (n, 2, 3) float64 affine: crop_xy = M @ [frame_x, frame_y, 1]

    def __post_init__(self) -> None:
        if self.pixels.ndim != 4 or self.pixels.shape[1] != self.pixels.shape[2] or self.pixels.shape[3] != 3:
            raise ValueError(f"AlignedFaces.pixels must be (n, S, S, 3), got {self.pixels.shape}")
        if self.frame_to_crop.shape != (len(self.pixels), 2, 3):
            raise ValueError(f"frame_to_crop must be ({len(self.pixels)}, 2, 3), got {self.frame_to_crop.shape}")

    @property
    def size_px(self) -> int:
        return self.pixels.shape[1]


def similarity_from_landmarks(landmarks_xy: np.ndarray, size_px: int) -> np.ndarray:
    """(2, 3) similarity transform taking the 5 frame landmarks onto ``TEMPLATE_5PT * size_px``."""
    # A huge RANSAC threshold makes every point an inlier, so the result is the least-squares fit
    # over all 5 points (refined by Levenberg-Marquardt): landmarks are noisy but not outliers.
    matrix, _ = cv2.estimateAffinePartial2D(
        landmarks_xy.astype(np.float32), TEMPLATE_5PT * size_px, method=cv2.RANSAC, ransacReprojThreshold=1e6
    )
    if matrix is None:
        raise ValueError(f"could not fit a similarity transform to landmarks {landmarks_xy.tolist()}")
    return matrix


def landmarks_or_box(faces: Detections) -> np.ndarray:
    """(n, 5, 2) landmarks, with the box-based estimate where a face's landmarks are unknown."""
    landmarks = faces.landmarks.copy()
    missing = ~faces.has_landmarks
    if missing.any():
        xy0 = faces.xyxy[missing, None, :2]
        wh = (faces.xyxy[missing, 2:] - faces.xyxy[missing, :2])[:, None, :]
        landmarks[missing] = xy0 + BOX_LANDMARKS_5PT[None] * wh
    return landmarks


def align_faces(image: np.ndarray, faces: Detections, size_px: int) -> AlignedFaces:
    """Warp every face of the frame to a ``size_px`` square crop (edges replicate the frame)."""
    landmarks = landmarks_or_box(faces)
    matrices = np.zeros((len(faces), 2, 3))
    crops = np.zeros((len(faces), size_px, size_px, 3), np.uint8)
    for i, lm in enumerate(landmarks):
        matrices[i] = similarity_from_landmarks(lm, size_px)
        # Replicated edges, not black: a black band would leak into the colour statistics and the
        # CLIP embedding when a face touches the frame border. Cubic: video faces are mostly
        # smaller than the crop, so this is an upscale.
        cv2.warpAffine(image, matrices[i], (size_px, size_px), dst=crops[i], flags=cv2.INTER_CUBIC,
                       borderMode=cv2.BORDER_REPLICATE)
    return AlignedFaces(crops, matrices)


def face_mask(size_px: int, feather: float = 0.06) -> np.ndarray:
    """(S, S) float32 soft mask of the face in an aligned crop: 1 inside, 0 outside.

    An egg shape (an ellipse whose lower half narrows towards the chin) from the brow line to the
    chin and cheek to cheek of ``TEMPLATE_5PT``; ``feather`` is the width of the soft edge as a
    fraction of the side. The edge lies inside the shape, so nothing outside it changes. Wider
    feathering hides seams better but leaves more of the original face's outline visible.
    """
    # Fractions of the side. The face in the template spans eyes 0.375..0.625 and eyes-to-mouth
    # 0.471..0.760; cheeks reach ~1.05 eye distances from the centre line, the chin ~0.7 eye
    # distances below the mouth and the brows/forehead ~0.9 above the eyes.
    centre_x, centre_y = 0.5, 0.585
    half_width, half_height_top, half_height_bottom = 0.265, 0.335, 0.33
    grid = (np.arange(size_px, dtype=np.float32) + 0.5) / size_px
    x = (grid[None, :] - centre_x)
    y = (grid[:, None] - centre_y)
    below = y > 0
    ny = np.where(below, y / half_height_bottom, y / half_height_top)
    # Narrow the lower half by up to 35% towards the chin: a face, not an ellipse.
    width = half_width * np.where(below, 1.0 - 0.35 * np.clip(ny, 0, 1) ** 2, 1.0)
    radius = np.sqrt((x / width) ** 2 + ny**2)  # 1.0 on the outline
    edge = max(feather, 1e-3) / half_width  # feather width in units of the normalised radius
    ramp = np.clip((1.0 - radius) / edge, 0.0, 1.0)
    return (ramp * ramp * (3.0 - 2.0 * ramp)).astype(np.float32)  # smoothstep: no visible kink


def mesh_face_mask(mesh_xy: np.ndarray, frame_to_crop: np.ndarray, size_px: int, feather: float = 0.06) -> np.ndarray | None:
    """(S, S) float32 soft mask of the face oval from a dense face mesh (``detect.landmarker``), in the
    aligned crop; None when the mesh is missing. Tighter than :func:`face_mask` on turned or unusual
    faces, since it follows the real outline. The soft edge lies inside the hull, like ``face_mask``'s.
    """
    if mesh_xy is None or np.isnan(mesh_xy).any():
        return None
    points = mesh_xy @ frame_to_crop[:, :2].T + frame_to_crop[:, 2]
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    mask = np.zeros((size_px, size_px), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    if mask.sum() < 16:
        return None
    inside_px = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    ramp = np.clip(inside_px / max(feather * size_px, 1.0), 0.0, 1.0)
    return (ramp * ramp * (3.0 - 2.0 * ramp)).astype(np.float32)


def match_colour(generated_rgb: np.ndarray, original_rgb: np.ndarray, mask: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Shift ``generated_rgb``'s per-channel Lab mean and std inside ``mask`` to ``original_rgb``'s.

    Reinhard et al. 2001 colour transfer. The diffusion model redraws skin tone and lighting only
    approximately; matching the statistics removes the colour step at the paste-back edge.
    ``strength`` in [0, 1] blends between no change and full matching.
    """
    weights = mask[..., None] > 0.5
    if strength <= 0 or weights.sum() < 16:
        return generated_rgb
    gen = cv2.cvtColor(generated_rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = cv2.cvtColor(original_rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    inside = weights[..., 0]
    gen_mean, gen_std = gen[inside].mean(0), gen[inside].std(0) + 1e-3
    ref_mean, ref_std = ref[inside].mean(0), ref[inside].std(0) + 1e-3
    matched = (gen - gen_mean) * (ref_std / gen_std) + ref_mean
    out = (1.0 - strength) * gen + strength * matched
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def paste_faces(image: np.ndarray, generated: np.ndarray, frame_to_crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend each generated crop into a copy of ``image`` through ``mask`` warped to the frame.

    ``mask`` is one (S, S) mask for every face, or (n, S, S), one per face.

    Works in the bounding box of each warped mask only, so the cost scales with the face size and
    pixels outside the faces are bit-identical to the input.
    """
    out = image.copy()
    height, width = image.shape[:2]
    masks = np.broadcast_to(mask, (len(generated), *mask.shape[-2:]))
    for crop, matrix, mask in zip(generated, frame_to_crop, masks):
        inside = np.argwhere(mask > 0)
        if not len(inside):
            continue
        (y0, x0), (y1, x1) = inside.min(0), inside.max(0) + 1
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
        crop_to_frame = cv2.invertAffineTransform(matrix)
        frame_corners = corners @ crop_to_frame[:, :2].T + crop_to_frame[:, 2]
        left, top = np.floor(frame_corners.min(0)).astype(int)
        right, bottom = np.ceil(frame_corners.max(0)).astype(int) + 1
        left, top = max(left, 0), max(top, 0)
        right, bottom = min(right, width), min(bottom, height)
        if right <= left or bottom <= top:
            continue  # the face is entirely outside the frame
        # Shift the transform so the warp writes straight into the region of interest.
        roi = crop_to_frame.copy()
        roi[:, 2] -= (left, top)
        size = (right - left, bottom - top)
        face = cv2.warpAffine(crop, roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(mask, roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = alpha[..., None]
        region = out[top:bottom, left:right].astype(np.float32)
        out[top:bottom, left:right] = np.rint(alpha * face + (1.0 - alpha) * region).astype(np.uint8)
    return out
