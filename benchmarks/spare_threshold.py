"""How often does ``--spare`` keep a stranger visible, and how often does it miss a listed person?

Embeds every identity photo of tests/data/images/identities (5 dlib "johns" x ~11 chips, plus the
Obama, Miranda and Lacamoire photos) with the pipeline's own embedder (``people.embed``), then for
each threshold counts:

- stranger kept visible (single face): different-person pairs at or above the threshold;
- stranger kept visible (track): a listed person = one chip, a stranger's track = 3 consecutive
  faces (3 other chips of one other person); the track is shown only if all 3 match
  (``TrackSelector``'s ``min_hits``);
- listed person matched: same-person pairs at or above the threshold.

    PYTHONPATH=$PWD python benchmarks/spare_threshold.py
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np

from faceanon_video.people.embed import PhotoEmbedder

ROOT = Path(__file__).resolve().parents[1] / "tests" / "data" / "images" / "identities"
THRESHOLDS = (0.3, 0.363, 0.4, 0.45, 0.5, 0.55)


def embed_all() -> tuple[np.ndarray, np.ndarray]:
    embedder = PhotoEmbedder()
    embeddings, labels = [], []
    photos = [(p, p.parent.name) for p in sorted((ROOT / "johns").glob("*/*.jpg"))]
    photos += [(p, p.stem) for p in sorted(ROOT.glob("*.*"))]
    for path, label in photos:
        embedding = embedder.embed(cv2.imread(str(path)))
        if embedding is not None:
            embeddings.append(embedding)
            labels.append(label)
    return np.stack(embeddings), np.asarray(labels)


def main() -> None:
    emb, labels = embed_all()
    sim = emb @ emb.T
    upper = np.triu_indices(len(emb), 1)
    same = (labels[:, None] == labels[None, :])[upper]
    pairs = sim[upper]
    # Tracks of 3 faces of one stranger against one reference chip.
    triples = []
    for ref in range(len(emb)):
        for other in sorted(set(labels) - {labels[ref]}):
            idx = np.flatnonzero(labels == other)
            for trio in itertools.combinations(idx, 3):
                triples.append(sim[ref, list(trio)].min())
    triples = np.asarray(triples)
    rows = []
    for t in THRESHOLDS:
        rows.append({
            "threshold": t,
            "stranger_single_face": f"{int((pairs[~same] >= t).sum())}/{int((~same).sum())}",
            "stranger_track_of_3": f"{int((triples >= t).sum())}/{len(triples)}",
            "listed_person_matched": f"{int((pairs[same] >= t).sum())}/{int(same.sum())}",
        })  # fmt: skip
    summary = {
        "faces": len(emb),
        "people": len(set(labels)),
        "same_person_similarity": {"min": round(float(pairs[same].min()), 3), "p5": round(float(np.percentile(pairs[same], 5)), 3)},
        "different_people_similarity": {"max": round(float(pairs[~same].max()), 3), "p99": round(float(np.percentile(pairs[~same], 99)), 3)},
        "rates": rows,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
