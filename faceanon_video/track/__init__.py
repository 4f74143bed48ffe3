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
numbers in the module docstring of that script and in the issue-3 report):

* Tracking on (default) vs off: on the synthetic six-face clips, face-frames left uncovered drop
  from ~8 % to 0 at the same throughput (the tracker costs ~0.5 ms CPU per frame with 10 faces).
  The price is extra blurred area: coasting boxes on faces that are hidden or gone.
* ``--detect-every N``: the full-frame detector runs every N-th frame; in between, faces already
  tracked are re-detected in crops around them (one small mosaic per frame). Detection cost falls
  roughly by N when faces cover little of the frame, less when many faces fill it. A face that
  appears between two full passes stays visible for up to N-1 frames, so the default is 1.
"""
