"""Still images in: one reader for photos to anonymize, ``--spare``/``--only`` reference photos and
``verify --face``, so a damaged file gets the same one clear line everywhere."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from faceanon_video.errors import InputError


def read_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as BGR (EXIF orientation applied, as ``cv2.imread`` does).

    A truncated or damaged file is refused: OpenCV decodes what it can of a cut JPEG, fills the
    rest with grey and lets libjpeg print a bare "Premature end of JPEG file" on stderr, so the
    whole file is first decoded by Pillow, which raises instead. Formats Pillow does not know are
    left to OpenCV alone."""
    try:
        with Image.open(path) as image:
            image.load()
    except UnidentifiedImageError:
        pass
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such image") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: damaged or truncated image ({exc})") from exc
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{path}: not a readable image")
    return bgr
