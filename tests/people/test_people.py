"""Person layer on real faces: linking across cuts and re-entries, per-person seeds, the encrypted
gallery, and --spare/--only decisions."""

from __future__ import annotations

import multiprocessing
import shutil

import numpy as np
import pytest

from faceanon_video.errors import ConfigError
from faceanon_video.people.embed import TrackEmbeddings, TrackFaces
from faceanon_video.people.gallery import IdentityGallery, read_store, write_store
from faceanon_video.people.link import OnlineLinker, TrackSpan, complete_linkage, link_tracks
from faceanon_video.people.people import identify_people
from faceanon_video.people.seeds import PersonSeeder
from faceanon_video.people.spare import TrackSelector, load_references
from faceanon_video.types import Frame

from .conftest import DATA_DIR, cut_clip, default_clip, gt_identity_of_tracks, linking_score


def _embed(clip, tracked) -> TrackEmbeddings:
    acc = TrackEmbeddings()
    for index, (bgr, faces) in enumerate(zip(clip.frames, tracked)):
        acc.add(Frame(bgr=bgr, index=index), faces)
    return acc


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


# -- linking ---------------------------------------------------------------------------------------


def test_link_keeps_overlapping_tracks_apart_and_joins_the_rest():
    e = _unit([1, 0, 0])
    spans = [
        TrackSpan(1, 0, 10, e, 1.0),
        TrackSpan(2, 5, 20, e, 1.0),  # on screen with 1: someone else, however alike
        TrackSpan(3, 30, 40, e, 1.0),  # later: joins one of them
        TrackSpan(4, 30, 40, _unit([0, 1, 0]), 1.0),  # a different face
        TrackSpan(5, 50, 60, None, 0.0),  # never embedded: alone
    ]
    person = link_tracks(spans)
    assert person[1] != person[2]
    assert person[3] in (person[1], person[2])
    assert len({person[4], person[1], person[2]}) == 3
    assert person[5] not in {person[t] for t in (1, 2, 3, 4)}
    assert sorted(set(person.values())) == list(range(1, len(set(person.values())) + 1))


def test_complete_linkage_does_not_chain_two_people_through_a_middle_track():
    a, b = _unit([1, 0, 0]), _unit([0.6, 0.8, 0])  # a.b = 0.6: linkable
    c = _unit([0.0, 1, 0])  # b.c = 0.8, a.c = 0: single linkage would chain a-b-c
    person = link_tracks([TrackSpan(1, 0, 1, a, 1.0), TrackSpan(2, 2, 3, b, 1.0), TrackSpan(3, 4, 5, c, 1.0)])
    assert person[1] != person[3]


def _same_cluster_pairs(labels) -> set[tuple[int, int]]:
    return {(a, b) for a in range(len(labels)) for b in range(a + 1, len(labels)) if labels[a] == labels[b]}


def test_complete_linkage_gives_scipys_clusters():
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(0)
    for _ in range(100):
        n, k = int(rng.integers(2, 40)), int(rng.integers(1, 8))
        x = rng.normal(size=(k, 16))[rng.integers(0, k, n)] + rng.normal(scale=rng.uniform(0.2, 1.0), size=(n, 16))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        distance = np.clip(1.0 - x @ x.T, 0.0, 2.0)
        apart = np.triu(rng.random((n, n)) < 0.05, 1)
        distance[apart | apart.T] = 4.0  # tracks on screen together
        np.fill_diagonal(distance, 0.0)
        cut = float(rng.uniform(0.2, 0.8))
        ours = complete_linkage(distance, cut)
        theirs = fcluster(linkage(squareform(distance, checks=False), method="complete"), t=cut, criterion="distance")
        assert _same_cluster_pairs(ours) == _same_cluster_pairs(theirs)
    assert complete_linkage(np.zeros((1, 1)), 0.5).tolist() == [0] and len(complete_linkage(np.zeros((0, 0)), 0.5)) == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_shot_cut_clip_gives_each_person_one_id_and_one_seed(seed, key):
    clip, tracked, cut = cut_clip(seed)
    acc = _embed(clip, tracked)
    gt = gt_identity_of_tracks(clip, tracked)
    people = identify_people(acc.tracks)
    score = linking_score(acc.tracks, people.person_of_track, gt)
    assert score["same_pairs"] >= 3  # each of the 3 people has a track before and after the cut
    assert score["linked"] == score["same_pairs"]
    assert score["wrong_merges"] == 0
    seeds = people.seeds_for(PersonSeeder(key), np.array(sorted(gt)))
    by_person = {}
    for track, s in zip(sorted(gt), seeds.tolist()):
        by_person.setdefault(gt[track], set()).add(s)
    assert all(len(s) == 1 for s in by_person.values())  # one seed per person...
    assert len(set.union(*by_person.values())) == len(by_person)  # ...and a different one each


def test_reentry_after_leaving_the_frame_is_the_same_person():
    clip, tracked = default_clip(0)
    acc = _embed(clip, tracked)
    gt = gt_identity_of_tracks(clip, tracked)
    person = link_tracks(acc.tracks)
    obama = [t for t, g in gt.items() if g == 4]  # walks out of the right edge and comes back
    assert len(obama) >= 2
    assert len({person[t] for t in obama}) == 1
    score = linking_score(acc.tracks, person, gt)
    assert score["wrong_merges"] == 0 and score["linked"] == score["same_pairs"]


def test_online_linker_relinks_a_returning_person_and_never_two_on_screen():
    linker = OnlineLinker(capacity=4)

    def track(tid, emb):
        t = TrackFaces(tid, 0, 0)
        t.embeddings, t.weights = [_unit(emb)] * 3, [1.0] * 3
        return t

    first = linker.update(1, track(1, [1, 0, 0]))
    other = linker.update(2, track(2, [1, 0.05, 0]))  # looks alike but on screen with 1
    assert other != first
    linker.end(1)
    assert linker.update(3, track(3, [1, 0.01, 0])) == first  # 1 came back
    assert linker.update(4, track(4, [0, 0, 1])) not in (first, other)


# -- seeds and gallery -----------------------------------------------------------------------------


def test_person_seeds_depend_on_key_and_label_only():
    a, b = PersonSeeder(b"a" * 32), PersonSeeder(b"b" * 32)
    assert a.seed_for(1) == PersonSeeder(b"a" * 32).seed_for(1)
    assert a.seed_for(1) != b.seed_for(1)
    assert a.seed_for("f00d") != a.seed_for(1)
    tracks = a.seeds_for_tracks(np.array([7, 8, 9]), {7: 1, 8: 1})
    assert tracks[0] == tracks[1] == a.seed_for(1) and tracks[2] != tracks[0]


def test_gallery_gives_the_same_id_in_another_video_and_refuses_wrong_key_or_tampering(tmp_path, key):
    path = tmp_path / "people.gallery"
    clip_a, tracked_a, _ = cut_clip(0)
    clip_b, tracked_b = default_clip(0)  # another video: obama and lacamoire appear in both
    people_a = identify_people(_embed(clip_a, tracked_a).tracks, IdentityGallery(path, key))
    people_b = identify_people(_embed(clip_b, tracked_b).tracks, IdentityGallery(path, key))
    gt_a, gt_b = gt_identity_of_tracks(clip_a, tracked_a), gt_identity_of_tracks(clip_b, tracked_b)

    def gallery_id(people, gt, actor):
        ids = {people.seed_label(people.person_of_track[t]) for t, g in gt.items() if g == actor}
        return ids

    obama_a, obama_b = gallery_id(people_a, gt_a, 1), gallery_id(people_b, gt_b, 4)
    laca_a, laca_b = gallery_id(people_a, gt_a, 2), gallery_id(people_b, gt_b, 6)
    assert len(obama_a) == 1 and obama_a <= obama_b and isinstance(next(iter(obama_a)), str)
    assert len(laca_a) == 1 and laca_a & laca_b and not (laca_a & obama_a)
    seeder = PersonSeeder(key)
    assert seeder.seed_for(next(iter(obama_a))) != PersonSeeder(b"x" * 32).seed_for(next(iter(obama_a)))

    blob = path.read_bytes()
    assert b"obama" not in blob and len(read_store(path, key).persons) >= 4
    with pytest.raises(ConfigError, match="wrong key"):
        IdentityGallery(path, b"another key, 32 bytes long......")
    tampered = bytearray(blob)
    tampered[-5] ^= 1
    path.write_bytes(bytes(tampered))
    with pytest.raises(ConfigError, match="wrong key, or the file was changed"):
        IdentityGallery(path, key)


def _add_one(args):
    path, key, vector = args
    return IdentityGallery(path, key).resolve([_unit(vector)], [1.0])[0]


def test_concurrent_writers_lose_nobody(tmp_path, key):
    path = str(tmp_path / "g")
    vectors = [np.eye(16)[i] for i in range(8)]  # 8 different people, added at once by 4 processes
    with multiprocessing.get_context("fork").Pool(4) as pool:
        ids = pool.map(_add_one, [(path, key, v) for v in vectors])
    stored = read_store(path, key)
    assert len(set(ids)) == 8 and {p.person_id for p in stored.persons} == set(ids)
    assert _add_one((path, key, vectors[3])) == ids[3]  # and each is found again


def test_people_sidecar_round_trip(tmp_path, key):
    clip, tracked, _ = cut_clip(0)
    people = identify_people(_embed(clip, tracked).tracks)
    write_store(tmp_path / "v.people", key, people.sidecar({"video": "v.mp4"}))
    store = read_store(tmp_path / "v.people", key, kind="people")
    assert sorted(p.label for p in store.persons) == sorted(people.means)
    assert all(p.tracks == people.tracks_of(p.label) for p in store.persons)


# -- spare / only ----------------------------------------------------------------------------------


def _other_chips(clip, tmp_path):
    """A folder with the *other* photos of the john in the clip: the reference is never the very
    photo that was pasted into the video."""
    used = DATA_DIR / clip.gt["identities"]["3"]
    folder = tmp_path / used.parent.name
    folder.mkdir()
    for chip in used.parent.glob("*.jpg"):
        if chip != used:
            shutil.copy(chip, folder / chip.name)
    return folder


def _run_selector(selector, clip, tracked):
    shown = []
    for index, (bgr, faces) in enumerate(zip(clip.frames, tracked)):
        anonymize = selector.anonymize(Frame(bgr=bgr, index=index), faces)
        shown.append(set(faces.track_id[~anonymize].tolist()))
    return shown


def _select(mode, tmp_path):
    """Per frame, the track ids left visible with the clip's john listed; and john's tracks."""
    clip, tracked, _ = cut_clip(0)
    gt = gt_identity_of_tracks(clip, tracked)
    selector = TrackSelector(load_references([_other_chips(clip, tmp_path)]), mode)
    return clip, tracked, _run_selector(selector, clip, tracked), {t for t, g in gt.items() if g == 3}


def test_spare_shows_only_the_listed_person(tmp_path):
    clip, tracked, shown, john = _select("spare", tmp_path)
    assert all(s <= john for s in shown)  # nobody else, ever
    frames_with_john = [i for i, faces in enumerate(tracked) if john & set(faces.track_id.tolist())]
    visible = sum(bool(shown[i] & john) for i in frames_with_john)
    # min_hits good faces before the first showing, after the start and after the cut: the rest shown.
    assert visible >= 0.75 * len(frames_with_john)


def test_only_hides_the_listed_person_and_shows_confident_strangers(tmp_path):
    _, _, shown, john = _select("only", tmp_path)
    assert not any(s & john for s in shown)
    assert any(s - john for s in shown)  # strangers do become visible once confidently not him


# -- verify without revealing ----------------------------------------------------------------------


def test_verify_answers_from_person_embeddings_without_face_pixels(tmp_path, key, capsys):
    import json

    from faceanon_video.cli import main

    clip, tracked, _ = cut_clip(0)
    people = identify_people(_embed(clip, tracked).tracks)
    sidecar = tmp_path / "v.people"
    write_store(sidecar, key, people.sidecar())
    key_file = tmp_path / "key"
    key_file.write_bytes(key)
    gt = gt_identity_of_tracks(clip, tracked)
    laca = {people.person_of_track[t] for t, g in gt.items() if g == 2}
    photos = DATA_DIR / "images" / "identities"

    code = main(["verify", "--people", str(sidecar), "--key-file", str(key_file), "--face", str(photos / "alex-lacamoire.png"), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and {r["person"] for r in result["people"] if r["match"]} == laca
    code = main(["verify", "--people", str(sidecar), "--key-file", str(key_file), "--face", str(photos / "lin-manuel-miranda.png"), "--json"])
    assert code == 1 and not json.loads(capsys.readouterr().out)["found"]
    key_file.write_bytes(b"w" * 32)
    assert main(["verify", "--people", str(sidecar), "--key-file", str(key_file), "--face", str(photos / "obama.jpg")]) != 0
    assert "wrong key" in capsys.readouterr().err
