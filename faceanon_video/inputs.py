"""Which files a run reads, and where their results go."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from faceanon_video.errors import InputError

__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "check_output_kind", "expand_inputs", "file_url_path", "is_image", "is_stream_input", "output_path_for"]

VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".mpg", ".mpeg", ".3gp"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def file_url_path(name: str) -> Path | None:
    """The local path of a ``file:`` URL (``file:///data/x.mp4``, ``%20`` decoded), None for any other
    INPUT. A ``file:`` URL names a file on this machine: it is read as that file (segments, audio,
    truncation checks...), not as a live stream; one on another host is refused."""
    if not name.lower().startswith("file:"):
        return None
    url = urlparse(name)
    if url.netloc not in ("", "localhost"):
        raise InputError(f"{name}: a file: URL must name a file on this machine (file:///path)")
    if not url.path:  # Path("") is ".": the current folder would be read
        raise InputError(f"{name}: a file: URL that names no file (file:///path)")
    return Path(url2pathname(url.path))


def is_stream_input(name: str) -> bool:
    """Whether an INPUT is a live stream URL (rtsp://, udp://, http(s)://...): anything with ``://``
    but a ``file:`` URL, which is a file."""
    return "://" in name and file_url_path(name) is None


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given (``file:`` URLs as their paths), and the videos/images directly inside any directory given."""
    paths: list[Path] = []
    for name in inputs:
        path = file_url_path(name) or Path(name)
        name = str(path)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS)
            if not found:
                raise InputError(f"{path}: no video or image files in this folder")
            paths.extend(found)
        elif not path.exists() and "://" not in name:
            raise InputError(f"{path}: no such file")
        else:
            paths.append(path)
    return paths


def output_path_for(source: Path, output: str | None, several: bool) -> Path:
    """``NAME_anonymized.EXT`` next to the input, inside ``output`` if that is a folder, or ``output`` itself.
    Inputs in a format we cannot write (GIF, ...) get an ``.mp4`` output."""
    suffix = source.suffix if source.suffix.lower() in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS else ".mp4"
    default_name = f"{source.stem}_anonymized{suffix}"
    if output is None:
        return source.with_name(default_name)
    out = Path(output)
    if several or out.is_dir():
        if not out.is_dir():
            raise InputError(f"{out}: with several inputs, -o must be an existing folder")
        return out / default_name
    return out


def check_output_kind(source: Path, destination: Path) -> None:
    """An image must go to an image file and a video to a video file: checked before any work."""
    if is_image(source) and not is_image(destination):
        raise InputError(f"{destination}: {source.name} is an image; name the output {', '.join(sorted(IMAGE_EXTENSIONS))}")
    if not is_image(source) and destination.suffix.lower() not in VIDEO_EXTENSIONS:
        raise InputError(f"{destination}: {source.name} is a video; name the output {', '.join(sorted(VIDEO_EXTENSIONS))}")
