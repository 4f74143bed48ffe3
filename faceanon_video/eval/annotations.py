"""Ground-truth face boxes from the annotation formats people already have.

Three formats load into one shape, a list of :class:`AnnotatedImage` (one per image or video frame):

- dlib imglab XML (``<dataset><images><image file=..><box top left width height/>``), the format of
  dlib's face-detector training sets and of ``imglab``;
- PASCAL VOC XML (one ``<annotation>`` file per image, or a folder of them), the format most face
  datasets are converted to;
- a ground-truth JSON of per-frame track boxes for videos,
  ``{"frames": [{"index": i, "faces": [{"id": .., "xyxy": [x0, y0, x1, y1]}]}]}``,
  which is what ``faceanon_video.testing.synthetic.make_synthetic_clip`` writes.

All boxes come out as ``xyxy`` float32 pixel coordinates with exclusive right/bottom edges (a box
covering pixel columns 10..19 is ``x0=10, x1=20``), the convention of :class:`~faceanon_video.types.Detections`.

The XML is parsed with the standard library's ElementTree; Python's bundled expat (>= 2.4) refuses
entity-expansion bombs, which is the risk that matters for annotation files a user downloaded.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceanon_video.errors import InputError

__all__ = [
    "AnnotatedImage",
    "Annotations",
    "load_annotations",
    "read_gt_json",
    "read_imglab_xml",
    "read_voc_xml",
]

log = logging.getLogger(__name__)


@dataclass
class AnnotatedImage:
    """The ground-truth faces of one image or one video frame.

    ``key`` is the frame index for video annotations and the image file name (as written in the
    annotation) for image annotations. ``ignore`` marks faces that should count neither as found nor
    as missed (dlib's ``ignore='1'``, VOC's ``<difficult>1``): too small or too blurry to judge.
    """

    key: int | str
    xyxy: np.ndarray
    ids: list[str | None] = field(default_factory=list)
    ignore: np.ndarray | None = None
    #: Where the image is on disk, for image annotations; None for video frames.
    image_path: Path | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        if not self.ids:
            self.ids = [None] * n
        if len(self.ids) != n:
            raise ValueError(f"AnnotatedImage has {n} boxes but {len(self.ids)} ids")
        self.ignore = np.zeros(n, bool) if self.ignore is None else np.asarray(self.ignore, bool).reshape(n)
        bad = (self.xyxy[:, 2] <= self.xyxy[:, 0]) | (self.xyxy[:, 3] <= self.xyxy[:, 1])
        if bad.any():
            raise ValueError(f"AnnotatedImage {self.key!r} has empty or inverted boxes: {self.xyxy[bad].tolist()}")

    def __len__(self) -> int:
        return len(self.xyxy)


@dataclass
class Annotations:
    """Every annotated image or frame of one annotation file."""

    #: "imglab", "voc" or "gt-json".
    format: str
    items: list[AnnotatedImage]
    #: The video the boxes belong to, when the annotation names it (GT JSON ``"video"``).
    video_path: Path | None = None

    @property
    def is_video(self) -> bool:
        return self.format == "gt-json"

    @property
    def face_count(self) -> int:
        return sum(len(item) for item in self.items)

    def by_key(self) -> dict[int | str, AnnotatedImage]:
        return {item.key: item for item in self.items}


def load_annotations(path: str | Path, *, voc_labels: tuple[str, ...] | None = ("face",)) -> Annotations:
    """Read any supported annotation file (or a folder of VOC XML files), sniffing the format.

    ``voc_labels`` keeps only VOC objects with these names (``None`` keeps all): VOC files of
    general datasets also label persons, cars, ..., which are not faces.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"annotation file not found: {path}")
    if path.is_dir():
        return Annotations("voc", read_voc_xml(path, labels=voc_labels))
    if path.suffix.lower() == ".json":
        return read_gt_json(path)
    root_tag = _parse_xml(path).tag
    if root_tag == "dataset":
        return Annotations("imglab", read_imglab_xml(path))
    if root_tag == "annotation":
        return Annotations("voc", read_voc_xml(path, labels=voc_labels))
    raise InputError(
        f"{path}: unknown annotation format (XML root <{root_tag}>; expected dlib imglab <dataset>, "
        "PASCAL VOC <annotation> or a .json of per-frame boxes)"
    )


def read_imglab_xml(path: str | Path) -> list[AnnotatedImage]:
    """Read a dlib imglab XML file.

    dlib stores ``top, left, width, height`` of an inclusive pixel rectangle, so the box covers
    columns ``left .. left+width-1``: in exclusive-edge xyxy that is ``[left, top, left+width, top+height]``.
    Image paths are relative to the XML file, as imglab writes them.
    """
    path = Path(path)
    root = _parse_xml(path)
    items = []
    for image in root.iter("image"):
        file = image.get("file")
        if file is None:
            raise InputError(f"{path}: <image> without a file attribute")
        boxes, ignore, ids = [], [], []
        for box in image.findall("box"):
            try:
                top, left = float(box.get("top")), float(box.get("left"))
                width, height = float(box.get("width")), float(box.get("height"))
            except (TypeError, ValueError) as exc:
                raise InputError(f"{path}: bad <box> in {file}: {box.attrib}") from exc
            boxes.append([left, top, left + width, top + height])
            ignore.append(box.get("ignore", "0") not in ("0", "false", ""))
            label = box.findtext("label")
            ids.append(label.strip() if label else None)
        items.append(_annotated(path, key=file, xyxy=boxes, ids=ids, ignore=ignore, image_path=path.parent / file))
    log.debug("read %d images from %s", len(items), path)
    return items


def read_voc_xml(path: str | Path, *, labels: tuple[str, ...] | None = ("face",)) -> list[AnnotatedImage]:
    """Read one PASCAL VOC XML file, or every ``*.xml`` in a folder (sorted by name).

    VOC coordinates are 1-based inclusive pixel indices, so ``xmin=1, xmax=10`` covers the first ten
    columns: exclusive-edge xyxy is ``[xmin-1, ymin-1, xmax, ymax]``. The image is looked for next to
    the XML file and in the sibling ``JPEGImages/`` folder of the standard VOC layout.
    """
    path = Path(path)
    files = sorted(path.glob("*.xml")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"no .xml files in {path}")
    wanted = None if labels is None else {label.lower() for label in labels}
    items = []
    for file in files:
        root = _parse_xml(file)
        if root.tag != "annotation":
            raise InputError(f"{file}: not a PASCAL VOC file (root <{root.tag}>)")
        filename = root.findtext("filename") or file.with_suffix(".jpg").name
        boxes, ignore, ids = [], [], []
        for obj in root.iter("object"):
            name = (obj.findtext("name") or "").strip()
            if wanted is not None and name.lower() not in wanted:
                continue
            bndbox = obj.find("bndbox")
            try:
                xmin, ymin, xmax, ymax = (float(bndbox.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError) as exc:
                raise InputError(f"{file}: object {name!r} has no valid <bndbox>") from exc
            boxes.append([xmin - 1, ymin - 1, xmax, ymax])
            ignore.append((obj.findtext("difficult") or "0").strip() == "1")
            ids.append(name or None)
        image_path = _first_existing([file.parent / filename, file.parent.parent / "JPEGImages" / filename])
        items.append(_annotated(file, key=filename, xyxy=boxes, ids=ids, ignore=ignore, image_path=image_path))
    return items


def read_gt_json(path: str | Path) -> Annotations:
    """Read per-frame track boxes: ``{"frames": [{"index": i, "faces": [{"id", "xyxy"}]}]}``.

    Frames not listed have no faces. A top-level ``"video"`` (relative to the JSON file) names the
    clip the boxes belong to. Face ids are kept as strings so int and str ids compare alike.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        frames = doc["frames"]
        items = []
        for frame in frames:
            faces = frame.get("faces", [])
            items.append(
                AnnotatedImage(
                    key=int(frame["index"]),
                    xyxy=[face["xyxy"] for face in faces],
                    ids=[None if face.get("id") is None else str(face["id"]) for face in faces],
                    ignore=[bool(face.get("ignore", False)) for face in faces],
                )
            )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a ground-truth JSON of per-frame face boxes ({exc})") from exc
    items.sort(key=lambda item: item.key)
    video = doc.get("video")
    video_path = None if video is None else path.parent / video
    return Annotations("gt-json", items, video_path=video_path)


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InputError(f"{path}: cannot read XML ({exc})") from exc


def _annotated(source: Path, **fields) -> AnnotatedImage:
    try:
        return AnnotatedImage(**fields)
    except ValueError as exc:
        raise InputError(f"{source}: {exc}") from exc


def _first_existing(candidates: list[Path]) -> Path:
    return next((p for p in candidates if p.exists()), candidates[0])
