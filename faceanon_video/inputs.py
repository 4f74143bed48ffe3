"""Which files a run reads, and where their results go."""

from __future__ import annotations

from pathlib import Path

from faceanon_video.errors import InputError

__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "check_output_kind", "expand_inputs", "is_image", "output_path_for"]

VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".mpg", ".mpeg", ".3gp"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, and the videos/images directly inside any directory given."""
    paths: list[Path] = []
    for name in inputs:
        path = Path(name)
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
