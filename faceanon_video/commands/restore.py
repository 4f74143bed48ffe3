"""``faceanon-video restore``: put the original faces back into an anonymized video from its vault.

    faceanon-video restore ANON_VIDEO --vault FILE --key-file KEY -o OUT [--crf 18]

Each frame's recorded face regions (see ``faceanon_video.vault``) are pasted back, pixel for pixel,
into the frame with the same index; frames without faces pass through. The video is re-encoded
(once more lossy, hence the lower default CRF) and audio is copied; OUT appears only when complete.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from faceanon_video.errors import ConfigError, InputError
from faceanon_video.io.decode import VideoReader
from faceanon_video.io.encode import VideoWriter, from_input
from faceanon_video.io.outputs import refuse_clashes
from faceanon_video.keys import load_key
from faceanon_video.types import Frame
from faceanon_video.vault import VaultReader, check_bound, check_video

log = logging.getLogger(__name__)


def add_vault_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments restore and verify share: the anonymized video, its vault and the key."""
    parser.add_argument("video", metavar="ANON_VIDEO", help="the anonymized video the vault was written with")
    parser.add_argument("--vault", required=True, metavar="FILE", help="the vault written by 'faceanon-video INPUT --vault FILE'")
    parser.add_argument("--key-file", required=True, metavar="FILE", help="the --key-file of that run")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_vault_arguments(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="the restored video")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--crf", type=int, default=18, help="quality of the re-encode (lower is better and bigger); 18 is visually lossless, so restoring adds little loss on top of the anonymized video's")
    parser.add_argument("--preset", default="veryfast", help="x264 preset (ultrafast..veryslow): slower is smaller at equal quality")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line")


def main(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise InputError(f"{output}: already exists (use --overwrite to replace it)")
    refuse_clashes([("-o", output)], [("INPUT", Path(args.video)), ("--vault", Path(args.vault)), ("--key-file", Path(args.key_file))])
    with VaultReader(args.vault, load_key(args.key_file)) as vault:
        reader = VideoReader(args.video)
        try:
            check_video(vault, args.video, reader.info.frame_count, (reader.info.width, reader.info.height))
            check_bound(vault, args.video)
            frames, faces = restore(reader, vault, output, crf=args.crf, preset=args.preset)
        finally:
            reader.close()
    if not args.quiet:
        sys.stdout.write(f"{args.video} -> {output}: {frames} frames, {faces} faces restored\n")
    return 0


def paste_faces(frame: Frame, faces: list) -> None:
    """Put the vault's ``faces`` back into ``frame``: into its I420 planes where the vault kept them
    (format 2) and the frame is still I420 as decoded, exact; through BGR otherwise (format 1, other
    pixel formats), which changes clipped colours by up to ~30 levels on the way back to 4:2:0."""
    for face in sorted(faces, key=lambda f: f.planes is None):  # planes first: BGR turns the frame to BGR
        x0, y0, x1, y1 = face.xyxy
        if face.planes is not None and frame.is_i420 and x1 <= frame.width and y1 <= frame.height:
            for plane, values, scale in zip(frame.planes(), face.planes, (1, 2, 2)):
                plane[y0 // scale : y1 // scale, x0 // scale : x1 // scale] = values
        else:
            # Clipped: the output of an odd-sized input is one pixel smaller than the vault's frames.
            frame.bgr[y0:y1, x0:x1] = face.bgr[: max(0, min(y1, frame.height) - y0), : max(0, min(x1, frame.width) - x0)]


def restore(reader: VideoReader, vault: VaultReader, destination: Path, crf: int = 18, preset: str = "veryfast") -> tuple[int, int]:
    """Paste the vault's faces into ``reader``'s frames and encode them to ``destination`` (atomically).
    Returns (frames, faces restored). Raises ``ConfigError`` when the video does not match the vault."""
    writer = VideoWriter(
        destination,
        fps=reader.info.fps,
        time_base=reader.info.time_base,
        crf=crf,
        preset=preset,
        **from_input(reader),  # under the default metadata policy, like every output
    )
    for first, last in vault.missing:
        log.warning("frames %d-%d were blacked out in the run (a segment failed): the vault has no faces for them", first, last)
    frame_s = 1.0 / float(reader.info.fps)
    vault_start_s = vault.info.get("first_pts_s")
    video_start_s = None
    frames = faces = 0
    success = False
    try:
        for item in reader.items(packets=True):
            if not isinstance(item, Frame):
                writer.write_packet(item)
                continue
            if frames == 0:
                check_video(vault, reader.url, 0, (item.width, item.height))
                video_start_s = item.time_s
            record = vault.record(item.index)
            if record is not None:
                # Same frame index but another moment: a different cut of the video (or another video).
                if None not in (record.pts_s, vault_start_s, item.time_s, video_start_s):
                    drift_s = (item.time_s - video_start_s) - (record.pts_s - vault_start_s)
                    if abs(drift_s) > frame_s / 2:
                        raise ConfigError(
                            f"{reader.url} does not match vault {vault.path}: frame {item.index} is at "
                            f"{item.time_s - video_start_s:.3f} s in the video, {record.pts_s - vault_start_s:.3f} s in the vault"
                        )
                paste_faces(item, record.faces)
                faces += len(record.faces)
            writer.write(item)
            frames += 1
        check_video(vault, reader.url, frames, None)
        writer.close(success=True)
        success = True
    finally:
        if not success:
            writer.close(success=False)
    return frames, faces
