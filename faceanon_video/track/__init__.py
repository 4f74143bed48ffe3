"""Tracking: carry every face through the frames where the detector misses it.

A per-frame detector misses faces in bursts (motion blur, dim light, a turned head, partial
occlusion, 20-30 px faces) and fires on clutter for a frame or two. ``ByteTracker``
(``bytetrack.py``) links detections into tracks with stable ids, keeps anonymizing a lost face on
its predicted, growing box for ``lost_track_buffer`` frames, and smooths boxes and landmarks so
masks do not jitter. Every track gets a keyed seed (``seeds.py``) that anonymizers read from
``Detections.seed``.

Modules: ``base.py`` (the ``Tracker`` protocol), ``bytetrack.py`` (the tracker), ``kalman.py``
(batched motion model), ``smoothing.py`` (One-Euro filter, motion padding), ``roi.py``
(re-detection around tracks for ``--detect-every``), ``seeds.py``, ``tracks_io.py``
(``--save-tracks`` JSONL), ``passthrough.py`` (``--no-track``).

Trade-offs, measured with ``benchmarks/tracking.py`` on this project's 2-core VM (YuNet detector;
full table in that script's docstring):

* Tracking on (default) vs off: on three synthetic six-face clips, uncovered face-frames drop from
  8.3 % (111 / 1330) to 0, and id switches are 5 (none at crossings). Compute throughput is ~5 %
  lower (35.7 vs 37.6 fps), end to end ~10 % (47.5 vs 53.4 fps): the tracker costs ~0.5-0.7 ms
  CPU per frame with 10 faces, and coasting, motion-padded boxes give the blur more to paint.
* ``--detect-every N``: the full-frame detector runs every N-th frame; in between, faces already
  tracked are re-detected in crops around them (one small mosaic per frame). On a one-face clip
  detection gets 1.7x / 2.4x / 3.6x faster at N = 2 / 3 / 5; with six faces in 640x272 the gain
  is ~15 %. A face that comes into view between two full passes stays visible for up to N-1
  frames (bikes.mp4: 1 / 3 / 7 of 57 face-frames uncovered at N = 2 / 3 / 5, against 1 at N = 1,
  a defocused face no detector here finds), so the default is 1.
"""
