"""Tracking: carry every face through the frames where the detector misses it.

A per-frame detector misses faces in bursts (motion blur, dim light, a turned head, partial
occlusion, 20-30 px faces) and fires on clutter for a frame or two. ``ByteTracker``
(``bytetrack.py``) links detections into tracks with stable ids, keeps anonymizing a lost face on
its predicted, growing box for ``lost_track_buffer`` frames, and smooths boxes and landmarks so
masks do not jitter. Every track gets a keyed seed (``seeds.py``) that anonymizers read from
``Detections.seed``.

Modules: ``base.py`` (the ``Tracker`` protocol), ``bytetrack.py`` (the tracker), ``kalman.py``
(batched motion model), ``smoothing.py`` (One-Euro filter, motion padding), ``roi.py``
(re-detection around tracks), ``backfill.py`` (files: held frames, faces found late covered
backwards, interpolation over skipped frames), ``seeds.py``, ``tracks_io.py`` (``--save-tracks``
JSONL), ``passthrough.py`` (``--no-track``).

Trade-offs, measured with ``benchmarks/tracking.py`` on this project's 2-core VM (YuNet detector;
full table in that script's docstring):

* Tracking on (default) vs off: on three synthetic six-face clips, uncovered face-frames drop from
  8.1 % (108 / 1330) to 0, with 6 id switches (none at crossings). The tracker costs ~0.5-1 ms CPU
  per frame with 10 faces; coasting, motion-padded boxes give the blur more to paint.
* ``--detect-every N`` (files: 2 by default): the full-frame detector runs every N-th frame; the
  frames between are held and settled by ``backfill.py``. Compute fps at N = 1 / 2 / 3 / 5: 87 /
  152 / 203 / 257, with 0 uncovered face-frames on the synthetic clips at every N, and 1 / 1 / 1 / 2
  of 57 on bikes.mp4 (the 1 at N = 1 is a defocused face no detector here finds). Live streams
  (no held frames) re-detect around known tracks on skipped frames instead, so a face that comes
  into view between two full passes stays visible for up to N-1 frames; they default to N = 1.
"""
