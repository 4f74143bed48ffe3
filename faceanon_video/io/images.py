"""Still images in: one reader for photos to anonymize, ``--spare``/``--only`` reference photos and
``verify --face``, so a damaged file gets the same one clear line everywhere."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from faceanon_video.errors import InputError

__all__ = ["MAX_PHOTO_PIXELS", "MAX_SIDE_PX", "check_fits_format", "read_image"]

#: Photos up to this many pixels are read (20000 x 20000; 1.2 GB as BGR, several times that while it
#: is anonymized). Pillow's own guard against decompression bombs refuses 179 MP and up, below what
#: medium-format cameras (100-150 MP) and stitched panoramas make; this limit replaces it.
MAX_PHOTO_PIXELS = 400_000_000
#: The longest side each output format holds (libjpeg as OpenCV builds it: 65500; WebP: 16383).
#: Checked before any work: OpenCV's encoder fails only at the end, with log lines of its own.
MAX_SIDE_PX = {".jpg": 65500, ".jpeg": 65500, ".webp": 16383}


def check_fits_format(destination: str | Path, width: int, height: int) -> None:
    """``InputError`` when a ``width`` x ``height`` picture cannot be written in ``destination``'s format."""
    suffix = Path(destination).suffix.lower()
    limit = MAX_SIDE_PX.get(suffix)
    if limit is not None and max(width, height) > limit:
        raise InputError(f"{destination}: a {width}x{height} photo does not fit in {suffix} (at most {limit} px a side); write .png or .tif")


# Pillow reads its limit from a module global: it is lifted only while read_image reads a file (the
# size is checked from the header here), one reader at a time.
_PILLOW_LIMIT = threading.Lock()


@contextlib.contextmanager
def _pillow_limit_lifted():
    with _PILLOW_LIMIT:
        pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit


def read_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as BGR (EXIF orientation applied, as ``cv2.imread`` does).

    A truncated or damaged file is refused: OpenCV decodes what it can of a cut JPEG, fills the
    rest with grey and lets libjpeg print a bare "Premature end of JPEG file" on stderr, so the
    whole file is first decoded by Pillow, which raises instead. Formats Pillow does not know are
    left to OpenCV alone. A photo of more than MAX_PHOTO_PIXELS is refused from its header, before
    any pixel is decoded."""
    try:
        with _pillow_limit_lifted(), Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PHOTO_PIXELS:
                raise InputError(
                    f"{path}: {width}x{height} is {width * height / 1e6:.0f} megapixels, too large a photo "
                    f"(at most {MAX_PHOTO_PIXELS / 1e6:.0f}; scale it down first)"
                )
            image.load()
    except UnidentifiedImageError:
        pass
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: damaged or truncated image ({exc})") from exc
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{path}: not a readable image")
    return bgr
