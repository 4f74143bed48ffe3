"""``io.images.read_image``: photos beyond Pillow's decompression-bomb guard are read up to
MAX_PHOTO_PIXELS; beyond that, one clear line (from the header: nothing is decoded)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from faceanon_video.cli import main
from faceanon_video.errors import EXIT_USER, InputError
from faceanon_video.io import images
from faceanon_video.io.images import read_image


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header says ``width`` x ``height`` (a few bytes, no pixel data for that size)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # the IHDR chunk's CRC
    return bytes(data)


def test_a_photo_claiming_500_megapixels_is_refused_plainly(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_claiming(25000, 20000))
    with pytest.raises(InputError, match=r"25000x20000 is 500 megapixels, too large a photo \(at most 400"):
        read_image(path)


def test_the_cli_refuses_it_in_one_line_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "huge.png"
    path.write_bytes(png_claiming(25000, 20000))
    out = tmp_path / "out"
    out.mkdir()
    assert main([str(path), "-q", "-o", str(out / "anon.png")]) == EXIT_USER
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "500 megapixels" in err[0] and "damaged" not in err[0], err
    assert list(out.iterdir()) == []


def test_pillows_own_limit_no_longer_applies_and_is_left_as_it_was(tmp_path, monkeypatch):
    """A photo above Pillow's guard (here lowered to 100 px: 179 MP in reality) is read, not
    called damaged; Pillow's setting is the same afterwards."""
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert np.array_equal(read_image(path), rgb[..., ::-1])
    assert Image.MAX_IMAGE_PIXELS == 100
    monkeypatch.setattr(images, "MAX_PHOTO_PIXELS", 1000)
    with pytest.raises(InputError, match="64x48 is 0 megapixels, too large a photo"):
        read_image(path)
    assert Image.MAX_IMAGE_PIXELS == 100


@pytest.mark.parametrize("suffix, side", [(".webp", 16384), (".jpg", 65501)])
def test_a_photo_wider_than_the_output_format_holds_is_refused_in_one_line(tmp_path, capfd, suffix, side):
    """A PNG panorama written as WebP (16383 px a side) or JPEG (65500): OpenCV's encoder failed only
    after the whole photo was processed, with its own [ERROR] lines and "cannot write this image format"."""
    import cv2

    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), np.full((8, side, 3), 120, np.uint8))
    out = tmp_path / f"out{suffix}"
    code = main([str(path), "-o", str(out), "-q"])
    err = capfd.readouterr().err
    assert code == EXIT_USER, err
    assert err.count("\n") == 1 and f"at most {side - 1} px" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.png"]
