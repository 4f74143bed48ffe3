"""The face vault: an encrypted sidecar file holding the original pixels of every anonymized face.

With ``--vault FILE --key-file KEY`` a run also writes FILE; whoever holds the key can later put the
original faces back (``faceanon-video restore``) or check who appears in the video
(``faceanon-video verify``). Without the key the file reveals only which frames have faces and how
large each frame's record is (roughly: how many and how big the faces are).

File format (all integers big-endian)::

    b"FAVAULT1"                       magic, 8 bytes
    salt                              16 random bytes, fresh per file
    {"format": 3, ...}\\n              JSON info line (public: format, algorithm names, quality and x264 options only)
    record*                           one per frame with faces, frame indices strictly increasing
    trailer                           a record with index -1: {"frames", "records", "source", "width", ...
                                      [, "missing": [[first, last], ...]]}

    record = u32 length | i64 frame index | 12-byte nonce | AES-256-GCM ciphertext + 16-byte tag
             (length counts everything after itself)

The record key is HKDF-SHA256(user key, salt, info=b"faceanon-video vault v1"); the associated data
of each record is SHA-256(header) + its frame index, so a record cannot be moved to another frame or
another vault, and the public header cannot be edited. The trailer counts the records, so cutting
records off the end or deleting one is detected too. A frame record's plaintext is::

    format 2, 3: u32 length | JSON {"frame", "pts_s", "faces": [{"track_id", "xyxy": [x0, y0, x1, y1]}],
                                    "picture_bytes"} | one H.264 packet
    format 1 (and format 2, 3 when a frame cannot join the stream, see ``FaceVideo.fits``):
              u32 length | JSON {"frame", "pts_s", "faces": [{"track_id", "xyxy", "png_bytes"}]}
              | the faces' PNG images (original BGR pixels of [y0:y1, x0:x1]), back to back

The packets of a vault are one H.264 stream (``FaceVideo``): picture n is frame n's I420 pixels inside
its face regions, flat grey elsewhere, predicted from other pictures. Format 2 had one packet per
picture at once (no B-frames); format 3 has B-frames and look-ahead, so the k-th record of the stream
holds its k-th packet in decode order, and the decoder gives the k-th picture (in frame order) a few
packets later. ``--vault-quality high`` keeps the faces visually lossless at the largest CRF that
allows, chosen per stretch of the stream (each stretch a fresh encoder, from a keyframe: the stream
stays one stream to the decoder, so format 3 readers read it as before; a stretch that misses the bar
is encoded again lower before any of it is written); ``exact`` encodes losslessly (QP 0: the regions come back bit for bit as the decoder gave them).

A segment-parallel run (``faceanon_video.segments``) writes one vault part per segment and merges them
(``VaultWriter.append_part``): the parts' records re-sealed under the merged header, in frame order,
their track ids renumbered to the joined video's. The picture stream is then the parts' streams one
after the other, each starting with its own keyframe (and SPS/PPS): one decoder reads through. The
trailer of a run whose segment was blacked out (``--on-segment-failure black``) lists those frames
under ``"missing"``: they have no faces to restore.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import struct
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import cv2
import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from faceanon_video.anonymize.regions import face_regions
from faceanon_video.errors import ConfigError, FaceanonError, InputError, describe_os_error
from faceanon_video.io.outputs import AtomicOutput
from faceanon_video.keys import derive_key, load_key
from faceanon_video.types import Detections, Frame, bgr_to_i420, i420_planes

__all__ = ["VAULT_QUALITIES", "VaultFace", "VaultReader", "VaultRecord", "VaultWriteError", "VaultWriter", "check_bound", "check_video", "open_run_vault", "vault_path_for"]

log = logging.getLogger(__name__)

MAGIC = b"FAVAULT1"
FORMAT = 3
#: Formats this version reads: 1 (PNG per face), 2 (the faces as one H.264 stream, one packet per
#: picture at once) and 3 (the same stream with B-frames and look-ahead: packets in decode order,
#: each in the next record that joined the stream, see ``VaultWriter._place``).
READABLE_FORMATS = (1, 2, 3)
#: ``--vault-quality``: see ``FaceVideo``.
VAULT_QUALITIES = ("high", "exact")
#: ``--vault-quality high`` is "visually lossless" by the criterion luma PSNR >= BAR_PSNR_DB and luma
#: SSIM >= BAR_SSIM inside the regions against the decoded input (luma: the detail the eye resolves;
#: chroma is 4:2:0 in every output anyway), met by every stretch of the stream. A fixed CRF fixes the
#: quantizer, not the fidelity: CRF 21 met it with no margin on carphone (sensor noise on every face
#: pixel: 45.2 dB / 0.992; 44.5 / 0.991 at 22) and kept a clean close-up portrait at 51 dB, 3.25x its
#: video. So the CRF is chosen per stretch of the stream from the fidelity x264 measured on the stretch
#: before (``FaceVideo._adapt``), aiming at ``TARGET_PSNR_DB`` / ``TARGET_SSIM`` (margins over the bar
#: for content that changes from one stretch to the next); a stretch that still misses the bar is
#: encoded again at a lower CRF (``FaceVideo.flush``). The first stretch uses ``FIRST_CRF``.
BAR_PSNR_DB = 45.0
BAR_SSIM = 0.99
TARGET_PSNR_DB = 46.5
TARGET_SSIM = 0.992
FIRST_CRF = 21
CRF_RANGE = (12, 36)
#: Lost per CRF step (the controller's gains): luma PSNR 0.5-0.7 dB (portrait, carphone), SSIM in
#: decibels ~0.3 (portrait: 0.9926 at CRF 25, 0.9921 at 26, ~0.990 at 29).
DB_PER_CRF = 0.6
SSIM_DB_PER_CRF = 0.3
#: The SSIM is measured on every SSIM_EVERY-th picture (it costs more than the encoding of a small face).
SSIM_EVERY = 4
#: At most this many CRF steps down / up from one stretch to the next. A stretch's content may not be
#: the next's (on the Hamilton clip, CRF 28 after a 49 dB stretch at 25 met harder faces: 43.9 dB for
#: 120 pictures), but such a miss is encoded again (``FaceVideo.flush``), so a fast climb costs time
#: (one more encoding of that stretch), never fidelity; the old limit of one step up cost bytes on
#: every clip that starts with room to spare (the portrait: 2.5x its video, now 1.9x). Three, not
#: four: on the portrait four made the second stretch miss (CRF 29: SSIM 0.989) for no smaller vault.
MAX_CRF_STEP = (4, 3)
#: Stretch lengths in pictures: short at first, to settle fast, then long (each starts a new encoder,
#: hence a keyframe; x264's own keyframe interval is 250).
STRETCH_PICTURES = (15, 30, 60, 120)
#: A stretch's pictures are held (their regions only) until it met the bar, in case it must be encoded
#: again; past this many bytes the stretch ends early (~120 pictures of full 1080p frames).
MAX_STRETCH_BYTES = 384 * 1024 * 1024
#: x264 preset, with its B-frames and look-ahead: at equal luma PSNR on portrait_d3.mp4, ``faster`` is
#: ~45 % smaller than ``veryfast`` without B-frames or look-ahead (format 2's ``zerolatency``) and ~20 %
#: smaller than ``veryfast`` with them, for ~1.5-2x its encoding time (on the vault's own thread).
PRESET = "faster"
SALT_BYTES = 16
NONCE_BYTES = 12
_HKDF_INFO = b"faceanon-video vault v1"
_TRAILER_INDEX = -1
_RECORD_HEAD = struct.Struct(">Iq")  # length, frame index
_MAX_INFO_BYTES = 64 * 1024
#: Refuse larger records: a damaged length field must not make the reader allocate gigabytes. One
#: record holds one frame's faces as PNG, which even for a full 8K frame stays far below this.
_MAX_RECORD_BYTES = 512 * 1024 * 1024
#: Region scale recorded in diffusion mode (see ``open_run_vault``).
DIFFUSION_REGION_SCALE = 2.0
#: Frames whose faces may wait for the writer thread (bounds the memory of a slow disk).
MAX_PENDING_FRAMES = 16
DAMAGED = "wrong key, or the vault is damaged"


class VaultWriteError(FaceanonError):
    """The vault could not be written. The pipeline stops the run instead of obscuring the frame: the
    vault is the only copy of the original faces, so a gap in it must not pass silently."""


@dataclass(frozen=True)
class VaultFace:
    track_id: int
    xyxy: tuple[int, int, int, int]  # integer region [y0:y1, x0:x1] of the frame
    bgr: np.ndarray  # the original pixels of that region
    #: Format 2, region at even coordinates: its Y, U, V planes as decoded (restore pastes these into
    #: an I420 frame: going through BGR and back is not exact where colours clip, up to ~30 levels).
    planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class VaultRecord:
    frame_index: int
    pts_s: float | None
    faces: list[VaultFace]


def _record_key(key: bytes, salt: bytes) -> AESGCM:
    return AESGCM(derive_key(key, _HKDF_INFO, salt))


def _associated_data(header_digest: bytes, frame_index: int) -> bytes:
    return header_digest + frame_index.to_bytes(8, "big", signed=True)


def vault_path_for(vault: str | Path, source: str | Path) -> Path:
    """One input's vault: ``vault`` itself, ``STEM.favault`` inside it when it is a folder (several
    inputs), or ``vault`` with ``{stem}`` replaced by the input's name."""
    target = Path(vault)
    stem = Path(str(source)).stem or "stream"
    if target.is_dir():
        return target / f"{stem}.favault"
    return target.with_name(target.name.replace("{stem}", stem))


def _png(bgr: np.ndarray, index: int) -> bytes:
    # PNG: lossless; compression level 1 favours speed (level 6 is ~20% smaller, 2x slower).
    try:
        ok, png = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    except cv2.error as exc:
        raise VaultWriteError(f"frame {index}: PNG encoding of a face failed: {exc}") from exc
    if not ok:
        raise VaultWriteError(f"frame {index}: PNG encoding of a face failed")
    return png.tobytes()


#: What fills the picture outside the face regions: flat grey costs nothing to predict.
FILL_LEVEL = 128


class FaceVideo:
    """The writer side of formats 2 and 3: each frame's face regions as one H.264 picture.

    Why one video over the masked frames: a face changes little from frame to frame, so inter-frame
    prediction stores it in a fraction of the bytes of one image per frame, and regions that overlap
    are stored once. Measured on short_hamilton_clip.mp4 (see the README): PNG per face 24.4 MB,
    per-track canvases 5.8 MB at CRF 18, one masked picture per frame 2.4 MB at CRF 18. The regions
    are taken from the frame's I420 planes as decoded (widened to even coordinates, so the chroma
    samples are whole), so ``exact`` (QP 0) is bit-exact; outside them the picture is flat grey.
    B-frames and look-ahead (format 3) make packets come later and out of frame order: the writer
    holds each record until its packet comes (``VaultWriter._place``): ~10-15 frames in ``exact``, up to
    a stretch (120 frames) in ``high``, whose packets wait until the stretch met the bar. ``fits`` says when
    a frame cannot go in the stream (another size; not held as I420 in exact mode): its faces are
    stored as PNG.
    """

    def __init__(self, quality: str = "high") -> None:
        self.quality = quality
        #: Public (the vault's header): what x264 was told. ``high``: the CRF changes per stretch.
        self.options = {"qp": "0"} if quality == "exact" else {"crf": f"adaptive from {FIRST_CRF}", "target_psnr_y_db": str(TARGET_PSNR_DB)}
        self.options.update(preset=PRESET)
        self._codec: av.CodecContext | None = None  # opened and used on the vault writer's thread
        self._size: tuple[int, int] | None = None  # (width, height) of the pictures
        self._count = 0
        self._crf = FIRST_CRF
        self._meter: _StretchMeter | None = None  # ``high``: the fidelity of the stretch being encoded
        #: ``high``: the stretch being encoded, held until it meets the bar (a miss is encoded again):
        #: per picture (pts, frame index, regions, their pixels), and the packets the encoder gave so far.
        self._stretch: list[tuple[int, int, list, list]] = []
        self._stretch_bytes = 0
        self._stretch_packets: list[bytes] = []
        #: (pictures, CRF, luma PSNR in dB, luma SSIM) of every stretch stored in the stream, for the log
        #: and the tests; ``missed``: the same of every attempt that fell below the bar and was encoded again.
        self.stretches: list[tuple[int, int, float, float]] = []
        self.missed: list[tuple[int, int, float, float]] = []

    def fits(self, frame: Frame) -> bool:
        if self.quality == "exact" and not frame.is_i420:
            return False  # a BGR frame would lose its chroma to 4:2:0: PNG keeps it exact
        self._size = self._size or _even_size(frame)
        return self._size == _even_size(frame)

    def cut(self, frame: Frame, regions_xyxy: list[tuple[int, int, int, int]]) -> list:
        """Copies of ``frame``'s I420 pixels in ``regions_xyxy`` (``fits`` must hold): its picture's
        content, everything else being flat grey. Cut out on the caller's thread (the anonymizer paints
        the frame right after); the picture is made on the encoder's (``encode``)."""
        source = frame.read_i420() if frame.is_i420 else bgr_to_i420(_pad_even(frame.read_bgr()))
        return _cut(source, regions_xyxy)

    def encode(self, pieces: list, frame_index: int, regions_xyxy: list[tuple[int, int, int, int]]) -> list[bytes]:
        """The packets the encoder gives for the picture of ``pieces`` (``cut``; pictures must come in
        frame order, ``regions_xyxy`` as given to ``cut``), in decode order; ``flush`` gives the rest. ``exact``:
        none while x264 looks ahead, later several. ``high``: none until the stretch is full, then the
        whole stretch's, once it met the bar (``flush``); the encoder restarts at the CRF its fidelity
        calls for: the decoder takes the new keyframe (and its new parameter sets) in stride, so the
        reader sees one stream."""
        packets = []
        full = len(self._stretch) >= STRETCH_PICTURES[min(len(self.stretches), len(STRETCH_PICTURES) - 1)]
        if self._meter is not None and (full or self._stretch_bytes >= MAX_STRETCH_BYTES):
            packets = self.flush()
        width, height = self._size
        if self._codec is None:
            self._codec = self._open(width, height)
        picture = _paste((height * 3 // 2, width), pieces)
        if self._meter is None:
            packets += self._feed(picture, self._count, frame_index, regions_xyxy)
        else:
            # Held for a redo: the regions only (a close-up's are most of the picture, a crowd's little).
            self._stretch.append((self._count, frame_index, regions_xyxy, pieces))
            self._stretch_bytes += sum(plane.nbytes for _, y, u, v in pieces for plane in (y, u, v))
            self._stretch_packets += self._feed(picture, self._count, frame_index, regions_xyxy)
        self._count += 1
        return packets

    def _feed(self, picture: np.ndarray, pts: int, frame_index: int, regions_xyxy: list) -> list[bytes]:
        av_frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
        av_frame.pts = pts
        if self._meter is not None:
            self._meter.add(picture, regions_xyxy)
        return self._packets(av_frame, frame_index)

    def _open(self, width: int, height: int) -> av.CodecContext:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.time_base = Fraction(1, 1)
        codec.thread_count = 1  # the vault's thread: the run's other stages have the other cores
        if self.quality == "exact":
            codec.options = dict(self.options)
        else:
            # x264 measures each picture's error against its input as it encodes (FFmpeg hands it out
            # as the packet's quality stats): the PSNR of every picture at no cost.
            codec.flags |= av.codec.context.Flags.psnr
            codec.options = {"crf": str(self._crf), "preset": PRESET}
            self._meter = _StretchMeter()
        return codec

    def flush(self) -> list[bytes]:
        """The packets held back; ends the stretch (the next picture opens a new encoder). ``high``: a
        stretch below the bar is encoded again, from its held pictures, at a lower CRF
        (``_redo_crf``), until it meets it; the packets of a miss are dropped, so only stretches that
        met the bar reach the vault."""
        if self._codec is None:
            return []
        packets = self._stretch_packets + self._packets(None, -1)
        self._codec, self._stretch_packets = None, []
        if self._meter is None:
            return packets
        measured = self._meter.finish()
        missed = False
        while not _meets_bar(*measured[1:]) and self._crf > CRF_RANGE[0]:
            self.missed.append((measured[0], self._crf, round(measured[1], 2), round(measured[2], 4)))
            self._crf = self._redo_crf(*measured[1:])
            log.debug("vault stretch of %d pictures at CRF %d: luma PSNR %.2f dB, SSIM %.4f, below the bar; again at CRF %d", *self.missed[-1], self._crf)
            packets, measured, missed = self._encode_again(), self._meter.finish(), True
        if not self.stretches and not missed:
            packets, measured = self._probe_bolder(packets, measured)
        self._adapt(*measured, missed=missed)
        self._meter, self._stretch, self._stretch_bytes = None, [], 0
        return packets

    def _encode_again(self) -> list[bytes]:
        """The held stretch through a fresh encoder at ``self._crf`` (``self._meter`` measures it)."""
        width, height = self._size
        self._codec = self._open(width, height)
        packets = []
        for pts, frame_index, regions_xyxy, held in self._stretch:
            packets += self._feed(_paste((height * 3 // 2, width), held), pts, frame_index, regions_xyxy)
        packets += self._packets(None, -1)
        self._codec = None
        return packets

    def _probe_bolder(self, packets: list[bytes], measured: tuple[int, float, float]) -> tuple[list[bytes], tuple[int, float, float]]:
        """The first stretch (short) again at the CRF its measures predict for the target, when that
        is higher: FIRST_CRF must be safe for noisy faces, and a clean close-up would otherwise spend
        its first stretch, with the stream's most expensive keyframe, at a CRF far below what it needs.
        The bolder encoding is kept only if it meets the bar too."""
        up = min(MAX_CRF_STEP[1], round(self._steps(*measured[1:], TARGET_PSNR_DB, TARGET_SSIM)))
        if up < 1:
            return packets, measured
        kept = packets, measured, self._crf
        self._crf += up
        bolder, bolder_measured = self._encode_again(), self._meter.finish()
        if _meets_bar(*bolder_measured[1:]):
            return bolder, bolder_measured
        self.missed.append((bolder_measured[0], self._crf, round(bolder_measured[1], 2), round(bolder_measured[2], 4)))
        packets, measured, self._crf = kept
        return packets, measured

    def _steps(self, psnr_db: float, ssim: float, aim_psnr_db: float, aim_ssim: float) -> float:
        """CRF steps from the current CRF to where the stretch just measured would meet both aims
        (negative: down). SSIM as decibels (-10 log10(1 - SSIM)) moves with the CRF about as PSNR does."""
        return min((psnr_db - aim_psnr_db) / DB_PER_CRF, (_ssim_db(ssim) - _ssim_db(aim_ssim)) / SSIM_DB_PER_CRF)

    def _redo_crf(self, psnr_db: float, ssim: float) -> int:
        """The CRF for a stretch that missed the bar at ``self._crf``: where the same pictures are
        predicted to land halfway between the bar and the target (they are the same pictures, so the
        prediction is close), at least one step down, and never above the last CRF a stretch met the
        bar at."""
        steps = self._steps(psnr_db, ssim, (BAR_PSNR_DB + TARGET_PSNR_DB) / 2, (BAR_SSIM + TARGET_SSIM) / 2)
        crf = self._crf + min(-1, int(np.floor(steps)))
        if self.stretches:
            crf = min(crf, self.stretches[-1][1])
        return max(crf, CRF_RANGE[0])

    def _adapt(self, pictures: int, psnr_db: float, ssim: float, missed: bool = False) -> None:
        """Choose the next stretch's CRF from this one's fidelity: the fewest steps either measure
        allows, at most MAX_CRF_STEP; none up right after a miss (the content is harder than the
        measures of the stretches before said)."""
        self.stretches.append((pictures, self._crf, round(psnr_db, 2), round(ssim, 4)))
        steps = self._steps(psnr_db, ssim, TARGET_PSNR_DB, TARGET_SSIM)
        self._crf = int(np.clip(self._crf + np.clip(round(steps), -MAX_CRF_STEP[0], 0 if missed else MAX_CRF_STEP[1]), *CRF_RANGE))
        log.debug("vault stretch of %d pictures at CRF %d: luma PSNR %.2f dB, SSIM %.4f in the faces; next CRF %d", *self.stretches[-1], self._crf)

    def _packets(self, av_frame: av.VideoFrame | None, frame_index: int) -> list[bytes]:
        try:
            packets = self._codec.encode(av_frame)
            if self._meter is not None:
                self._meter.measure(packets, final=av_frame is None)
        except av.error.FFmpegError as exc:
            raise VaultWriteError(f"frame {frame_index}: encoding the faces failed: {exc}") from exc
        return [bytes(packet) for packet in packets]


def _meets_bar(psnr_db: float, ssim: float) -> bool:
    return psnr_db >= BAR_PSNR_DB and ssim >= BAR_SSIM


def _cut(picture: np.ndarray, regions_xyxy: list[tuple[int, int, int, int]]) -> list:
    """Copies of the I420 ``picture``'s ``regions_xyxy`` (widened to whole chroma samples), for ``_paste``."""
    y_in, u_in, v_in = i420_planes(picture)
    pieces = []
    for x0, y0, x1, y1 in regions_xyxy:
        cx0, cy0, cx1, cy1 = x0 // 2, y0 // 2, -(-x1 // 2), -(-y1 // 2)  # whole chroma samples
        box = (cx0, cy0, cx1, cy1)
        pieces.append((box, y_in[2 * cy0 : 2 * cy1, 2 * cx0 : 2 * cx1].copy(), u_in[cy0:cy1, cx0:cx1].copy(), v_in[cy0:cy1, cx0:cx1].copy()))
    return pieces


def _paste(shape: tuple[int, ...], pieces: list) -> np.ndarray:
    """An I420 picture of ``shape``, flat grey but for the ``_cut`` pieces."""
    picture = np.full(shape, FILL_LEVEL, np.uint8)
    y_out, u_out, v_out = i420_planes(picture)
    for (cx0, cy0, cx1, cy1), y, u, v in pieces:
        y_out[2 * cy0 : 2 * cy1, 2 * cx0 : 2 * cx1] = y
        u_out[cy0:cy1, cx0:cx1] = u
        v_out[cy0:cy1, cx0:cx1] = v
    return picture


def _ssim_db(ssim: float) -> float:
    return -10 * float(np.log10(max(1 - ssim, 1e-9)))


def ssim_sum(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of the SSIM map of two luma crops (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5).
    Hand-written: OpenCV has no SSIM outside its contrib modules, and scikit-image is not a dependency."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float((((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).sum())


class _StretchMeter:
    """How faithful one stretch of ``high`` pictures came out, in their regions: luma PSNR from x264's
    SSE of every picture, luma SSIM from decoding the packets (the reader's decoder) and comparing
    every ``SSIM_EVERY``-th picture with its input, which waits here until its picture decodes."""

    def __init__(self) -> None:
        self.pictures = 0
        self._region_px = self._sse_y = 0
        self._ssim_sum, self._ssim_px = 0.0, 0
        self._decoder = FaceVideoDecoder()
        self._inputs: deque[tuple[np.ndarray, list] | None] = deque()  # per picture not yet decoded: (Y, regions) or None

    def add(self, picture: np.ndarray, regions_xyxy: list[tuple[int, int, int, int]]) -> None:
        height = picture.shape[0] * 2 // 3
        inside = np.zeros((height, picture.shape[1]), bool)  # the regions' union: overlaps count once
        for x0, y0, x1, y1 in regions_xyxy:
            inside[y0:y1, x0:x1] = True
        self._region_px += int(np.count_nonzero(inside))
        self._inputs.append((picture[:height], regions_xyxy) if self.pictures % SSIM_EVERY == 0 else None)
        self.pictures += 1

    def measure(self, packets: list[av.Packet], final: bool) -> None:
        """x264 reports the SSE of the whole picture: the grey outside the regions adds a little
        (ringing at their edges), so dividing by the regions' pixels errs on the safe side."""
        decoded = []
        for packet in packets:
            self._sse_y += _luma_sse(packet)
            decoded += self._decoder.decode(bytes(packet))
        if final:
            decoded += self._decoder.decode(None)
        for picture in decoded:
            held = self._inputs.popleft()
            if held is not None:
                y_in, y_out = held[0], picture.planes()[0]
                for x0, y0, x1, y1 in held[1]:
                    self._ssim_sum += ssim_sum(y_out[y0:y1, x0:x1], y_in[y0:y1, x0:x1])
                    self._ssim_px += (x1 - x0) * (y1 - y0)

    def finish(self) -> tuple[int, float, float]:
        """(pictures, luma PSNR in dB, luma SSIM) of the stretch, once its packets are all measured."""
        mse = self._sse_y / max(self._region_px, 1)
        psnr_db = 10 * float(np.log10(255**2 / mse)) if mse else float("inf")
        return self.pictures, psnr_db, self._ssim_sum / self._ssim_px if self._ssim_px else 1.0


#: AVPacket quality stats (libavcodec/packet.h, AV_PKT_DATA_QUALITY_STATS): u32 quality, u8 picture
#: type, u8 error count, 2 reserved bytes, then u64 SSE per plane (native byte order).
_QUALITY_STATS = struct.Struct("=IBBxxQ")


def _luma_sse(packet: av.Packet) -> int:
    """The luma SSE of the picture ``packet`` encodes, as x264 measured it (``Flags.psnr``)."""
    if not packet.has_sidedata("quality_stats"):
        raise VaultWriteError("the face encoder gave no quality stats")
    _, _, planes, sse_y = _QUALITY_STATS.unpack_from(bytes(packet.get_sidedata("quality_stats")))
    if planes < 1:
        raise VaultWriteError("the face encoder gave no luma error")
    return sse_y


def _even_size(frame: Frame) -> tuple[int, int]:
    return frame.width + frame.width % 2, frame.height + frame.height % 2


def _pad_even(bgr: np.ndarray) -> np.ndarray:
    return cv2.copyMakeBorder(bgr, 0, bgr.shape[0] % 2, 0, bgr.shape[1] % 2, cv2.BORDER_REPLICATE)


class FaceVideoDecoder:
    """The reader side of ``FaceVideo``: packets in decode order in, I420 ``Frame``s out in frame order
    (format 3: a few packets later, as B-frames are reordered; format 2: one per packet at once)."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("h264", "r")

    def decode(self, packet: bytes | None) -> list[Frame]:
        """The pictures ``packet`` completes (None: the end, all held back). Raises ``ValueError`` for
        a packet that does not decode (the record is then malformed)."""
        try:
            pictures = self._codec.decode(None if packet is None else av.Packet(packet))
        except av.error.FFmpegError as exc:
            raise ValueError(f"the face picture does not decode: {exc}") from exc
        return [Frame(i420=picture.to_ndarray(format="yuv420p")) for picture in pictures]


class VaultWriter:
    """Records the original face regions of each frame; call ``write`` for EVERY frame, in order,
    before the anonymizer paints it, then ``close(success)``.

    The file is written under a temporary name and renamed into place by ``close(success=True)``,
    like the video, so a failed run never leaves a vault that looks complete.

    Args:
        mask_scale: the run's ``--mask-scale``: regions are the anonymizer's (as boxes, so the whole
            painted area is kept). Larger keeps more background and costs more space.
        info: facts about the source (name, size) stored encrypted in the trailer, checked by restore.
    """

    def __init__(self, path: str | Path, key: bytes, mask_scale: float = 1.3, info: dict | None = None, quality: str = "high") -> None:
        if quality not in VAULT_QUALITIES:
            raise ConfigError(f"--vault-quality must be one of {', '.join(VAULT_QUALITIES)}, not {quality!r}")
        self.path = Path(path)
        self.mask_scale = mask_scale
        self.info = dict(info or {})
        self._video = FaceVideo(quality)
        self.output = AtomicOutput(self.path)
        salt = secrets.token_bytes(SALT_BYTES)
        public = {"format": FORMAT, "kdf": "HKDF-SHA256", "cipher": "AES-256-GCM", "content": "H.264 face pictures", "quality": quality, "x264": self._video.options}
        self._header = MAGIC + salt + json.dumps(public, sort_keys=True).encode() + b"\n"
        self._digest = hashlib.sha256(self._header).digest()
        self._aead = _record_key(key, salt)
        self.frames = 0
        self.records = 0
        self.faces = 0
        self._first_pts_s: float | None = None
        self._last_index = _TRAILER_INDEX
        self._finished = False
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vault")
        self._pending: deque[Future] = deque()
        #: Records waiting, in frame order, for their packet (index, head, blobs): used on the worker only.
        self._unsealed: deque[tuple[int, dict, list[bytes]]] = deque()
        try:
            self._file = open(self.output.temp, "wb")  # noqa: SIM115 - closed in close()
            self._file.write(self._header)
        except OSError as exc:
            self.output.discard()
            raise VaultWriteError(f"vault {self.path}: {describe_os_error(exc, self.path)}") from exc

    def write(self, frame: Frame, faces: Detections) -> None:
        """Store the original pixels of ``faces`` in ``frame`` (nothing is written for a face-free frame)."""
        if frame.index <= self._last_index:
            raise VaultWriteError(f"vault frames must come in order: got {frame.index} after {self._last_index}")
        self._last_index = frame.index
        if self.frames == 0:
            self._first_pts_s = frame.time_s
            self.info.setdefault("width", frame.width)
            self.info.setdefault("height", frame.height)
        self.frames += 1
        ids = faces.track_id if faces.track_id is not None else np.full(len(faces), -1, np.int64)
        regions = []
        for i in range(len(faces)):
            # One face at a time: face_regions skips faces wholly outside the frame, so ids stay paired.
            for region in face_regions(faces[i], frame.shape, self.mask_scale, "box"):
                # Widened to even coordinates: 4:2:0 chroma covers 2x2 pixels, and a block cut by the
                # region's edge would come back from restore with the anonymized pixels' colour mixed in.
                x0, y0 = region.x0 - region.x0 % 2, region.y0 - region.y0 % 2
                x1, y1 = min(frame.width, region.x1 + region.x1 % 2), min(frame.height, region.y1 + region.y1 % 2)
                regions.append((int(ids[i]), (x0, y0, x1, y1)))
        if not regions:
            return
        self.records += 1
        self.faces += len(regions)
        # Cut out here (the anonymizer paints the frame in place right after this call); encoding
        # costs a few ms a frame, so it runs on the writer's own thread (one, to keep the records and
        # the picture stream in order); at most MAX_PENDING_FRAMES frames wait in memory.
        if self._video.fits(frame):
            pieces, crops = self._video.cut(frame, [xyxy for _, xyxy in regions]), None
        else:
            pieces, crops = None, [frame.crop_bgr(*xyxy).copy() for _, xyxy in regions]
        self._pending.append(self._worker.submit(self._seal, frame.index, frame.time_s, regions, pieces, crops))
        while self._pending and (len(self._pending) > MAX_PENDING_FRAMES or self._pending[0].done()):
            self._pending.popleft().result()  # re-raises the worker's error in the caller's thread

    def _seal(self, index: int, pts_s: float | None, regions: list, pieces: list | None, crops: list | None) -> None:
        head = {"frame": index, "pts_s": pts_s, "faces": [{"track_id": track_id, "xyxy": list(xyxy)} for track_id, xyxy in regions]}
        if pieces is None:
            blobs = [_png(bgr, index) for bgr in crops]
            for face, blob in zip(head["faces"], blobs):
                face["png_bytes"] = len(blob)
            self._unsealed.append((index, head, blobs))
        else:
            head["picture_bytes"] = None  # its packet comes from the encoder, maybe a few frames later
            self._unsealed.append((index, head, []))
            self._place(self._video.encode(pieces, index, [xyxy for _, xyxy in regions]))
        self._seal_ready()

    def _seal_ready(self) -> None:
        """Seal the records at the head of the queue that have all their bytes (records go in frame order)."""
        while self._unsealed and self._unsealed[0][1].get("picture_bytes", 0) is not None:
            index, head, blobs = self._unsealed.popleft()
            head = json.dumps(head).encode()
            self._append(index, struct.pack(">I", len(head)) + head + b"".join(blobs))

    def _place(self, packets: list[bytes]) -> None:
        """The k-th packet of the stream (in decode order) goes into the k-th record that joined the
        stream: the counts match, and the reader hands the decoded pictures (which come out in frame
        order) to those records in that order."""
        waiting = (entry for entry in self._unsealed if entry[1].get("picture_bytes", 0) is None)
        for packet in packets:
            entry = next(waiting, None)
            if entry is None:
                raise VaultWriteError("the face encoder gave more packets than pictures")
            entry[1]["picture_bytes"] = len(packet)
            entry[2].append(packet)

    def _drain(self) -> None:
        """On the writer's thread, after the last frame: the encoder's held-back packets, and the rest of the records."""
        self._place(self._video.flush())
        self._seal_ready()
        if self._unsealed:
            raise VaultWriteError(f"the face encoder gave no picture for frame {self._unsealed[0][0]}")

    def _append(self, index: int, plaintext: bytes) -> None:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plaintext, _associated_data(self._digest, index))
        try:
            self._file.write(_RECORD_HEAD.pack(8 + len(sealed), index) + sealed)
        except OSError as exc:
            raise VaultWriteError(f"vault {self.path}: {describe_os_error(exc, self.path)}") from exc

    def append_part(self, part: VaultReader, track_ids: dict[int, int]) -> None:
        """Append every record of ``part`` (a vault of the frames after those written so far, same key
        and settings), re-sealed under this vault's header, with its track ids renumbered by
        ``track_ids`` (others kept). Used instead of ``write``: the part's picture stream starts with
        a keyframe, so the merged stream decodes through. Re-sealed rather than copied: the associated
        data binds each record to its vault's header, and verify groups faces by track id."""
        if part.public != json.loads(self._header[len(MAGIC) + SALT_BYTES :]):
            raise VaultWriteError(f"vault part {part.path} was written with other settings ({part.public}); rerun with --jobs 1")
        if self.frames == 0:
            self._first_pts_s = part.info.get("first_pts_s")
        for name in ("width", "height"):
            if part.info.get(name) is not None:
                self.info.setdefault(name, part.info[name])
        for index, plain in part.plaintexts():
            if index <= self._last_index:
                raise VaultWriteError(f"vault part {part.path}: frame {index} comes after frame {self._last_index}")
            (head_len,) = struct.unpack(">I", plain[:4])
            head = json.loads(plain[4 : 4 + head_len])
            for face in head["faces"]:
                face["track_id"] = track_ids.get(face["track_id"], face["track_id"])
            encoded = json.dumps(head).encode()
            self._append(index, struct.pack(">I", len(encoded)) + encoded + plain[4 + head_len :])
            self._last_index = index
            self.records += 1
            self.faces += len(head["faces"])
        self.frames += part.frames

    def add_missing(self, first_frame: int, last_frame: int, first_pts_s: float | None = None) -> None:
        """Count frames ``first_frame..last_frame`` (after those written so far) as frames of the run
        with no faces kept, listed in the trailer's ``"missing"`` (a segment blacked out after it
        failed). ``first_pts_s``: the first frame's time, when these are the run's first frames."""
        if first_frame <= self._last_index:
            raise VaultWriteError(f"vault frames must come in order: got {first_frame} after {self._last_index}")
        if self.frames == 0:
            self._first_pts_s = first_pts_s
        self.info.setdefault("missing", []).append([first_frame, last_frame])
        self.frames += last_frame - first_frame + 1
        self._last_index = last_frame

    def finish(self, video_sha256: str | None = None) -> None:
        """Write the trailer and flush it to disk (the file keeps its temporary name until ``close``).
        Called before the video is committed, so a vault that cannot be completed fails the run.

        ``video_sha256``: digest of the anonymized output's encoded video (``VideoWriter.video_sha256``),
        sealed in the trailer so restore and verify accept that video only (see ``check_bound``)."""
        if self._finished:
            return
        if video_sha256 is not None:
            self.info["video_sha256"] = video_sha256
        self._pending.append(self._worker.submit(self._drain))
        while self._pending:
            self._pending.popleft().result()
        self._worker.shutdown(wait=True)
        try:
            trailer = {**self.info, "frames": self.frames, "records": self.records, "first_pts_s": self._first_pts_s}
            self._append(_TRAILER_INDEX, json.dumps(trailer).encode())
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            raise VaultWriteError(f"vault {self.path}: {describe_os_error(exc, self.path)}") from exc
        self._finished = True

    def close(self, success: bool = True) -> None:
        """With ``success``: finish and rename into place; otherwise remove the partial file."""
        try:
            if success:
                self.finish()
                self.output.commit()
                log.info("vault %s: %d faces in %d of %d frames", self.path, self.faces, self.records, self.frames)
                return
        except BaseException:
            self._abandon()
            raise
        self._abandon()

    def _abandon(self) -> None:
        """Remove the partial file; never raises (the run's real error is being reported)."""
        try:
            self._worker.shutdown(wait=True, cancel_futures=True)  # it may be writing to the file
            self._pending.clear()
            self._file.close()  # flushes: fails on a full disk
        except OSError as exc:
            log.debug("vault %s: closing the partial file: %s", self.path, exc)
        finally:
            self.output.discard()


def open_run_vault(
    vault: str | Path,
    source: str | Path,
    *,
    key_file: str | Path,
    mask_scale: float,
    diffusion: bool = False,
    start_s: float | None = None,
    end_s: float | None = None,
    overwrite: bool = False,
    quality: str = "high",
) -> VaultWriter:
    """The vault of one input of a run (``--vault``: a file, or a folder for one per input), keyed by
    ``--key-file``; ``mask_scale`` and ``diffusion`` say what the anonymizer paints, the span which
    part of ``source`` the run covers, ``quality`` (``--vault-quality``) how faithfully faces are kept."""
    path = vault_path_for(vault, source)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (use --overwrite to replace it)")
    # Diffusion pastes through a feathered mask of the aligned face crop, which may reach past the
    # --mask-scale box; a wider region makes sure restore covers everything it painted.
    mask_scale = max(mask_scale, DIFFUSION_REGION_SCALE) if diffusion else mask_scale
    info = {"source": Path(str(source)).name, "start_s": start_s, "end_s": end_s}
    return VaultWriter(path, load_key(key_file), mask_scale=mask_scale, info=info, quality=quality)


class VaultReader:
    """Opens a vault and checks it against the key at once: the framing is scanned and the trailer,
    which authenticates the header and counts the records, is decrypted before anything else.

    Records are decrypted one at a time (``record(i)`` or iteration), so memory stays flat. Every
    failure to authenticate raises ``ConfigError("... wrong key, or the vault is damaged")``: AES-GCM
    cannot tell a wrong key from an edited byte, and neither can we.
    """

    def __init__(self, path: str | Path, key: bytes) -> None:
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise InputError(f"cannot read vault {self.path}: {exc.strerror or exc}") from exc
        try:
            self._open(key)
        except BaseException:
            self._file.close()
            raise

    def _damaged(self, why: str) -> ConfigError:
        log.debug("vault %s: %s", self.path, why)
        return ConfigError(f"{self.path}: {DAMAGED}")

    def _open(self, key: bytes) -> None:
        head = self._file.read(len(MAGIC) + SALT_BYTES)
        if head[: len(MAGIC)] != MAGIC:
            raise InputError(f"{self.path}: not a faceanon-video vault")
        line = self._file.readline(_MAX_INFO_BYTES)
        if len(head) < len(MAGIC) + SALT_BYTES or not line.endswith(b"\n"):
            raise self._damaged("header cut short or too long")
        self._digest = hashlib.sha256(head + line).digest()
        try:
            self.public = json.loads(line)
        except ValueError as exc:
            raise self._damaged("header is not JSON") from exc
        if not isinstance(self.public, dict) or self.public.get("format") not in READABLE_FORMATS:
            raise InputError(f"{self.path}: vault format {self.public!r} is not supported by this version")
        self._aead = _record_key(key, head[len(MAGIC) :])
        self._where, trailer = self._scan()
        try:
            self.info = json.loads(self._decrypt(_TRAILER_INDEX, *trailer))
        except ValueError as exc:
            raise self._damaged("trailer is not JSON") from exc
        if self.info.get("records") != len(self._where):
            raise self._damaged(f"trailer counts {self.info.get('records')} records, the file holds {len(self._where)}")
        self._order = list(self._where)  # increasing: _scan refuses any other order
        self._rewind()

    def _rewind(self) -> None:
        """Back to before the first record: the picture stream decodes from its start again."""
        self._pictures = FaceVideoDecoder()
        self._next = 0  # position in _order of the next record to decrypt
        self._last_read = _TRAILER_INDEX
        self._read_ahead: dict[int, tuple[dict, bytes, int]] = {}  # index -> (head, plaintext, offset of the faces)
        self._waiting: deque[int] = deque()  # stream records whose picture has not come out yet
        self._decoded: dict[int, Frame] = {}  # their pictures, once out

    def _scan(self) -> tuple[dict[int, tuple[int, int]], tuple[int, int]]:
        """(offset, length) of every record's sealed bytes by frame index, and the trailer's; no decryption."""
        where: dict[int, tuple[int, int]] = {}
        trailer = None
        last = _TRAILER_INDEX
        size = os.fstat(self._file.fileno()).st_size
        offset = self._file.tell()
        while offset < size:
            raw = self._file.read(_RECORD_HEAD.size)
            if len(raw) < _RECORD_HEAD.size:
                raise self._damaged("cut inside a record header")
            length, index = _RECORD_HEAD.unpack(raw)
            body = length - 8
            if trailer is not None or body < NONCE_BYTES + 16 or length > _MAX_RECORD_BYTES or offset + 4 + length > size:
                raise self._damaged(f"bad record framing at byte {offset}")
            if index == _TRAILER_INDEX:
                trailer = (offset + _RECORD_HEAD.size, body)
            elif index <= last:
                raise self._damaged(f"record for frame {index} out of order")
            else:
                where[index] = (offset + _RECORD_HEAD.size, body)
                last = index
            offset += 4 + length
            self._file.seek(offset)
        if trailer is None:
            raise self._damaged("no trailer (file cut short)")
        return where, trailer

    @property
    def frames(self) -> int:
        """Frames of the run that wrote the vault (with and without faces)."""
        return int(self.info["frames"])

    @property
    def frame_indices(self) -> list[int]:
        """Indices of the frames that have faces, in order."""
        return list(self._where)

    def _decrypt(self, index: int, offset: int, length: int) -> bytes:
        self._file.seek(offset)
        sealed = self._file.read(length)
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _associated_data(self._digest, index))
        except InvalidTag as exc:
            raise self._damaged(f"record {index} fails authentication") from exc

    def record(self, frame_index: int) -> VaultRecord | None:
        """The faces of one frame, or None when the frame had none. Fastest in increasing frame order
        (restore, verify): a format 2/3 picture is predicted from other frames', so reading back or
        skipping ahead decodes the pictures in between again."""
        if frame_index not in self._where:
            return None
        if frame_index <= self._last_read:
            self._rewind()
        try:
            return self._read(frame_index)
        except (KeyError, TypeError, ValueError, struct.error) as exc:
            # Authenticated yet unparsable: written by a buggy or incompatible writer, not tampered with.
            raise InputError(f"{self.path}: the record of frame {frame_index} is malformed ({exc})") from exc

    def plaintexts(self) -> Iterator[tuple[int, bytes]]:
        """(frame index, decrypted record) of every record in order, unparsed (``VaultWriter.append_part``)."""
        for index, where in self._where.items():
            yield index, self._decrypt(index, *where)

    @property
    def missing(self) -> list[tuple[int, int]]:
        """(first, last) frames of the run whose faces the vault does not hold: segments blacked out
        after they failed (``--on-segment-failure black``); those frames are black in the video."""
        return [(int(first), int(last)) for first, last in self.info.get("missing", [])]

    def _advance(self) -> bool:
        """Decrypt the next record and feed its packet to the decoder; after the last, flush the
        decoder. False when there is nothing more to decode."""
        if self._next > len(self._order):
            return False
        if self._next == len(self._order):
            pictures, self._next = self._pictures.decode(None), self._next + 1
        else:
            index = self._order[self._next]
            self._next += 1
            plain = self._decrypt(index, *self._where[index])
            (head_len,) = struct.unpack(">I", plain[:4])
            head = json.loads(plain[4 : 4 + head_len])
            if head["frame"] != index:
                raise ValueError(f"record {index} says frame {head['frame']}")
            offset = 4 + head_len
            pictures = []
            if "picture_bytes" in head:
                self._waiting.append(index)
                pictures = self._pictures.decode(plain[offset : offset + head["picture_bytes"]])
                offset += head["picture_bytes"]
            self._read_ahead[index] = (head, plain, offset)
        for picture in pictures:
            if not self._waiting:
                raise ValueError("more face pictures than records")
            self._decoded[self._waiting.popleft()] = picture
        return True

    def _read(self, frame_index: int) -> VaultRecord:
        while frame_index not in self._read_ahead or (self._waiting and self._waiting[0] <= frame_index):
            if not self._advance():
                raise ValueError("its face picture is missing from the stream")
            for kept in (self._read_ahead, self._decoded):  # records skipped over: forget them
                for index in [i for i in kept if i < frame_index]:
                    del kept[index]
        self._last_read = frame_index
        head, plain, offset = self._read_ahead.pop(frame_index)
        picture = self._decoded.pop(frame_index, None)
        faces = []
        for face in head["faces"]:
            x0, y0, x1, y1 = (int(v) for v in face["xyxy"])
            planes = None
            if picture is not None:
                if x1 > picture.width or y1 > picture.height:
                    raise ValueError(f"the region of track {face['track_id']} is outside the picture")
                bgr = picture.crop_bgr(x0, y0, x1, y1)
                if not (x0 % 2 or y0 % 2 or x1 % 2 or y1 % 2):
                    y, u, v = picture.planes()
                    planes = (y[y0:y1, x0:x1], u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2], v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2])
            else:
                end = offset + face["png_bytes"]
                bgr = cv2.imdecode(np.frombuffer(plain[offset:end], np.uint8), cv2.IMREAD_COLOR)
                offset = end
            if bgr is None or bgr.shape[:2] != (y1 - y0, x1 - x0):
                raise ValueError(f"the face image of track {face['track_id']} does not match its region")
            faces.append(VaultFace(int(face["track_id"]), (x0, y0, x1, y1), bgr, planes))
        return VaultRecord(frame_index, head.get("pts_s"), faces)

    def __iter__(self) -> Iterator[VaultRecord]:
        for index in self._where:
            yield self.record(index)

    @property
    def quality(self) -> str:
        """How faithfully the faces were kept: ``exact`` for format 1 (PNG) or ``--vault-quality``."""
        return self.public.get("quality", "exact")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> VaultReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_video(vault: VaultReader, video: str | Path, frame_count: int, size_px: tuple[int, int] | None) -> None:
    """Raise ``ConfigError`` (one line) when ``video`` cannot be the anonymized output the vault was
    written with: a different frame count (0: unknown, not checked) or frame size (either orientation,
    since a container's coded size is before rotation)."""
    info = vault.info
    problems = []
    if frame_count and frame_count != vault.frames:
        problems.append(f"{frame_count} frames, the vault {vault.frames}")
    # An odd-sized input is written one pixel smaller (4:2:0 needs even sizes): that is the same video.
    if size_px and info.get("width") and sorted(size_px) != sorted((info["width"], info["height"])) and sorted(size_px) != sorted((info["width"] // 2 * 2, info["height"] // 2 * 2)):
        problems.append(f"{size_px[0]}x{size_px[1]} pixels, the vault {info['width']}x{info['height']}")
    if problems:
        raise ConfigError(
            f"{video} does not match vault {vault.path} (written for {info.get('source', '?')}): the video has " + "; ".join(problems)
        )


def check_bound(vault: VaultReader, video: str | Path) -> None:
    """Raise ``ConfigError`` unless ``video`` is the very anonymized output the vault was written
    with: its encoded video must hash to the digest sealed in the vault's trailer. Another video of the
    same size, frame count and timing would otherwise get faces pasted into the wrong frames."""
    sealed = vault.info.get("video_sha256")
    if sealed is None:
        log.warning("vault %s predates video binding: only the frame count, size and timing are checked", vault.path)
        return
    from faceanon_video.io.decode import video_sha256

    if video_sha256(video) != sealed:
        raise ConfigError(
            f"{video} is not the video vault {vault.path} was written with (written for {vault.info.get('source', '?')}; "
            "re-encoded, edited or another video)"
        )
