"""``faceanon-video verify``: does the person in a photo appear in an anonymized video?

    faceanon-video verify ANON_VIDEO --vault FILE --key-file KEY --face PHOTO [--threshold 0.363] [--json]
    faceanon-video verify --people FILE | --gallery FILE --key-file KEY --face PHOTO [--json]

With ``--vault``, the vault's original face crops are decrypted (nothing is written to disk), the face
in each is found with YuNet and embedded with the bundled SFace model (``people.embed``), and each
track's best cosine similarity to the photo's face is compared with SFace's published threshold.

With ``--people`` (a video's encrypted people sidecar) or ``--gallery`` (the identity gallery across
videos), the answer comes from the stored person embeddings alone: no face pixel is decrypted,
because there is none in those files (``people.gallery``). Each stored person's similarity to the
photo is compared with the threshold.

Exit code 0 when the person is found, 1 when not.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from faceanon_video.errors import InputError
from faceanon_video.io.decode import VideoReader
from faceanon_video.io.images import read_image
from faceanon_video.keys import load_key
from faceanon_video.people.embed import PhotoEmbedder
from faceanon_video.people.gallery import read_store
from faceanon_video.vault import VaultReader, check_bound, check_video

#: SFace's cosine-similarity threshold for "same person" (OpenCV Zoo, measured on LFW).
SFACE_THRESHOLD = 0.363


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", metavar="ANON_VIDEO", nargs="?", help="the anonymized video the vault was written with (with --vault)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--vault", metavar="FILE", help="the vault written by 'faceanon-video INPUT --vault FILE' (decrypts the original face crops in memory)")
    source.add_argument("--people", metavar="FILE", help="a video's encrypted person embeddings (no face pixels are decrypted)")
    source.add_argument("--gallery", metavar="FILE", help="the encrypted identity gallery of --gallery runs (no face pixels are decrypted)")
    parser.add_argument("--key-file", required=True, metavar="FILE", help="the --key-file of that run")
    parser.add_argument("--face", required=True, metavar="PHOTO", help="a photo of the person to look for (the largest face in it is used)")
    parser.add_argument("--threshold", type=float, default=SFACE_THRESHOLD, help="cosine similarity at or above which a face counts as the same person: higher gives fewer false matches and more misses")
    parser.add_argument("--every", type=int, default=5, metavar="N", help="embed one face of each track every N frames: 1 checks every face (slowest, finds the person in the fewest frames); larger is faster")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


@dataclass
class TrackMatch:
    track_id: int
    frames: int  # frames of the track in the vault
    checked: int  # faces of it that were found and embedded
    best_similarity: float | None
    first_frame: int
    match: bool = False


def main(args: argparse.Namespace) -> int:
    if args.every < 1:
        raise InputError("--every must be >= 1")
    photo = read_image(args.face)
    embedder = PhotoEmbedder()
    reference = embedder.embed(photo)
    if reference is None:
        raise InputError(f"{args.face}: no face found in the photo")
    if args.vault is None:
        return _verify_people(args, reference)
    if args.video is None:
        raise InputError("--vault needs the anonymized video (ANON_VIDEO)")
    with VaultReader(args.vault, load_key(args.key_file)) as vault:
        with VideoReader(args.video) as video:
            check_video(vault, args.video, video.info.frame_count, (video.info.width, video.info.height))
        check_bound(vault, args.video)
        tracks = match_tracks(vault, embedder, reference, args.threshold, args.every)
    found = [t for t in tracks if t.match]
    if args.json:
        result = {"video": args.video, "face": args.face, "threshold": args.threshold, "found": bool(found), "tracks": [asdict(t) for t in tracks]}
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(_table(tracks, args.threshold))
        verdict = f"found in track {', '.join(str(t.track_id) for t in found)}" if found else "not found"
        sys.stdout.write(f"{args.face}: {verdict} in {args.video}\n")
    return 0 if found else 1


def match_tracks(vault: VaultReader, embedder: PhotoEmbedder, reference: np.ndarray, threshold: float, every: int = 5) -> list[TrackMatch]:
    """Best similarity to ``reference`` per track, embedding one face per track every ``every`` frames."""
    tracks: dict[int, TrackMatch] = {}
    next_frame: dict[int, int] = defaultdict(int)  # per track: the first frame to embed again
    for record in vault:
        for face in record.faces:
            track = tracks.setdefault(face.track_id, TrackMatch(face.track_id, 0, 0, None, record.frame_index))
            track.frames += 1
            if record.frame_index < next_frame[face.track_id]:
                continue
            embedding = embedder.embed(face.bgr)  # pads the crop: YuNet misses faces touching the edge
            if embedding is None:
                continue  # no face found in this crop (turned, blurred): try the track's next frame
            next_frame[face.track_id] = record.frame_index + every
            similarity = float(np.dot(reference, embedding))  # both unit vectors: cosine similarity
            track.checked += 1
            if track.best_similarity is None or similarity > track.best_similarity:
                track.best_similarity = similarity
    for track in tracks.values():
        track.match = track.best_similarity is not None and track.best_similarity >= threshold
    return sorted(tracks.values(), key=lambda t: (-(t.best_similarity or -2.0), t.track_id))


def _table(tracks: list[TrackMatch], threshold: float) -> str:
    lines = [f"{'track':>6} {'frames':>7} {'checked':>8} {'similarity':>11}  match (>= {threshold:g})"]
    for t in tracks:
        similarity = "-" if t.best_similarity is None else f"{t.best_similarity:.3f}"
        lines.append(f"{t.track_id:>6} {t.frames:>7} {t.checked:>8} {similarity:>11}  {'yes' if t.match else 'no'}")
    return "\n".join(lines) + "\n"


def _verify_people(args: argparse.Namespace, reference: np.ndarray) -> int:
    """Answer from stored person embeddings (``--people`` or ``--gallery``): no face pixels."""
    path = args.people or args.gallery
    store = read_store(path, load_key(args.key_file), kind="people" if args.people else "gallery")
    rows = []
    for person in store.persons:
        similarity = float(np.dot(reference, person.embedding))
        rows.append({"person": person.label if person.label is not None else person.person_id, "tracks": person.tracks,
                     "similarity": round(similarity, 4), "match": similarity >= args.threshold})  # fmt: skip
    rows.sort(key=lambda r: -r["similarity"])
    found = [r for r in rows if r["match"]]
    if args.json:
        sys.stdout.write(json.dumps({"file": path, "face": args.face, "threshold": args.threshold, "found": bool(found), "people": rows}, indent=2) + "\n")
    else:
        for r in rows:
            sys.stdout.write(f"{str(r['person']):>34} {r['similarity']:>7.3f}  {'yes' if r['match'] else 'no'}\n")
        verdict = f"found (person {', '.join(str(r['person']) for r in found)})" if found else "not found"
        sys.stdout.write(f"{args.face}: {verdict} in {path} ({len(rows)} people)\n")
    return 0 if found else 1
