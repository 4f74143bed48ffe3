"""``--people`` / ``--gallery`` end to end through the command line: tracks linked into people at the
end of a file run, the person of each track in ``--save-tracks``, the encrypted sidecar answering
``verify --people``, and the gallery keeping its people across videos."""

from __future__ import annotations

import json

import numpy as np

from faceanon_video.cli import main
from faceanon_video.geometry import box_iou
from faceanon_video.people.gallery import read_store
from faceanon_video.track.tracks_io import read_tracks
from tests.conftest import CARPHONE, HAMILTON
from tests.people.test_spare_cli import MIRANDA, MIRANDA_BOXES


def _run(source, out, key, *extra) -> int:
    return main([str(source), "-o", str(out), "--end", "5", "-q", "--key-file", str(key), *map(str, extra)])


def _person_of_track(tracks_file) -> dict[int, int]:
    last = json.loads(tracks_file.read_text().splitlines()[-1])
    return {row["track"]: row["person"] for row in last["people"]}


def test_people_link_tracks_write_a_sidecar_and_keep_gallery_ids_across_videos(tmp_path, capsys):
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    gallery = tmp_path / "ids.gallery"
    tracks = tmp_path / "h.jsonl"
    assert _run(HAMILTON, tmp_path / "h.mp4", key, "--people", tmp_path / "h.people", "--gallery", gallery, "--save-tracks", tracks) == 0

    # The track file: still one line per frame for every reader, then the person of every track.
    records = read_tracks(tracks)
    assert len(records) == 150
    person_of_track = _person_of_track(tracks)
    assert set(person_of_track) == {t for r in records for t in r.faces.track_id.tolist()}
    his_tracks = {
        t
        for r in records
        if r.frame_index in MIRANDA_BOXES
        for xyxy, t in zip(r.faces.xyxy, r.faces.track_id.tolist())
        if box_iou(np.asarray([xyxy]), np.asarray([MIRANDA_BOXES[r.frame_index]]))[0, 0] > 0.5
    }
    assert len(his_tracks) == 2  # before and after the cut: two tracks ...
    assert len({person_of_track[t] for t in his_tracks}) == 1  # ... one person
    him = person_of_track[his_tracks.pop()]
    assert sum(p == him for p in person_of_track.values()) == 2  # nobody else merged into him

    # The sidecar answers verify from embeddings: Miranda is found, and he is that person.
    capsys.readouterr()
    assert main(["verify", "--people", str(tmp_path / "h.people"), "--key-file", str(key), "--face", str(MIRANDA), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["found"]
    sidecar = read_store(tmp_path / "h.people", key.read_bytes(), kind="people")
    assert {p.person_id for p in sidecar.persons if set(p.tracks) >= {t for t, q in person_of_track.items() if q == him}}

    # The gallery: the same people again add nobody; a new video adds its one new person.
    known = len(read_store(gallery, key.read_bytes(), kind="gallery").persons)
    assert known >= 2
    assert _run(HAMILTON, tmp_path / "h2.mp4", key, "--gallery", gallery) == 0
    assert len(read_store(gallery, key.read_bytes(), kind="gallery").persons) == known
    assert _run(CARPHONE, tmp_path / "c.mp4", key, "--gallery", gallery) == 0
    assert len(read_store(gallery, key.read_bytes(), kind="gallery").persons) == known + 1


def test_a_gallery_under_another_key_is_refused_before_any_output(tmp_path, capsys):
    key, other = tmp_path / "key", tmp_path / "other"
    key.write_bytes(b"k" * 32)
    other.write_bytes(b"o" * 32)
    gallery = tmp_path / "ids.gallery"
    assert _run(CARPHONE, tmp_path / "c.mp4", key, "--gallery", gallery) == 0
    before = gallery.read_bytes()
    assert _run(CARPHONE, tmp_path / "c2.mp4", other, "--gallery", gallery, "--people", tmp_path / "c2.people") == 2
    assert "wrong key" in capsys.readouterr().err
    assert not (tmp_path / "c2.mp4").exists() and not (tmp_path / "c2.people").exists()
    assert gallery.read_bytes() == before


def test_people_needs_a_key(tmp_path, capsys):
    assert main([str(CARPHONE), "-o", str(tmp_path / "c.mp4"), "--people", str(tmp_path / "c.people")]) == 2
    assert "--people needs --key-file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
