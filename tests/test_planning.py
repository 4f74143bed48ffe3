"""--save-plan / --plan end to end on real and synthetic clips: pixels, seeds, refusals."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
import pytest

from faceanon_video.anonymize.regions import face_regions
from faceanon_video.cli import main
from faceanon_video.config import RunConfig
from faceanon_video.pipeline import process_file
from faceanon_video.plan import Plan, candidate_sources
from faceanon_video.planning import SECOND_DETECTOR_EVERY, analyse, disagreements
from faceanon_video.processor import FrameProcessor
from faceanon_video.types import Detections, Frame

DATA = Path(__file__).resolve().parent / "data"
CLIP = DATA / "short_hamilton_clip.mp4"
SPAN = ["--end", "3"]  # 90 frames of a crowd: several people, entries and exits
LOSSLESS = ["--crf", "0", "-q"]  # x264 lossless: output pixels equal the decoded input where untouched


def _yuv(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]


@lru_cache(maxsize=None)
def _input_frames() -> tuple[np.ndarray, ...]:
    return tuple(_yuv(CLIP)[:90])


@pytest.fixture(scope="module")
def saved_plan(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "clip.plan.json"
    assert main([str(CLIP), *SPAN, "-q", "--save-plan", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("key") / "key"
    path.write_bytes(b"k" * 32)
    return path


def test_plan_describes_the_clip(saved_plan):
    plan = Plan.load(saved_plan)
    assert plan.input.frame_count == 90 and (plan.input.width, plan.input.height) == (640, 360)
    assert plan.input.end_s == 3.0 and plan.settings["detect_every"] == 2
    assert len(plan.persons) >= 3 and all(p.decision == "anonymize" for p in plan.persons.values())
    assert sum(len(t) for t in plan.tracks.values()) > 100
    assert plan.obscured == [] and plan.validate() == []


def test_plan_render_gives_the_pixels_of_a_normal_run(saved_plan, tmp_path, key_file):
    normal, planned = tmp_path / "normal.mp4", tmp_path / "planned.mp4"
    common = [*SPAN, "-q", "--key-file", str(key_file)]
    assert main([str(CLIP), *common, "-o", str(normal)]) == 0
    assert main([str(CLIP), *common, "--plan", str(saved_plan), "-o", str(planned)]) == 0
    a, b = _yuv(normal), _yuv(planned)
    assert len(a) == len(b) == 90
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, _input_frames()))  # faces were anonymized


def _box_mask(shape, xyxy, scale=1.3) -> np.ndarray:
    """Pixels within the paint area of a face (``anonymize.regions.face_regions``: the scaled box, a
    box cut by the frame edge first extended to a whole face), rounded outwards by 2 px."""
    mask = np.zeros(shape, bool)
    region = face_regions(Detections(xyxy=np.asarray([xyxy], np.float32), score=np.ones(1, np.float32)), shape, mask_scale=scale)[0]
    mask[max(region.y0 - 2, 0) : region.y1 + 2, max(region.x0 - 2, 0) : region.x1 + 2] = True
    return mask


def test_sparing_a_person_keeps_their_face_and_anonymizes_the_others(saved_plan, tmp_path):
    plan = Plan.load(saved_plan)
    frames_of = {p: sum(len(plan.tracks[t]) for t in person.track_ids) for p, person in plan.persons.items()}
    spared = max(frames_of, key=frames_of.get)
    plan.set_decision(spared, "spare")
    edited, out = tmp_path / "edited.json", tmp_path / "out.mp4"
    plan.save(edited)
    assert main([str(CLIP), *LOSSLESS, "--plan", str(edited), "-o", str(out)]) == 0
    source = _input_frames()
    checked_spared = checked_others = 0
    for index, frame in enumerate(_yuv(out)):
        y, y_in = frame[:360], source[index][:360]
        anonymized = plan.faces_on(index)
        painted = np.zeros(y.shape, bool)
        for xyxy in anonymized.xyxy:
            painted |= _box_mask(y.shape, xyxy)
        np.testing.assert_array_equal(y[~painted], y_in[~painted])  # nothing changed outside the anonymized faces
        for track_id in plan.persons[spared].track_ids:
            row = plan.tracks[track_id].row(index)
            if row is not None:
                face = _box_mask(y.shape, plan.tracks[track_id].xyxy[row], scale=1.0) & ~painted
                if face.sum() > 100:
                    np.testing.assert_array_equal(y[face], y_in[face])  # the spared face, pixel for pixel
                    checked_spared += 1
        for xyxy in anonymized.xyxy:
            x0, y0, x1, y1 = (int(v) for v in xyxy)
            core = np.s_[y0 + (y1 - y0) // 3 : y1 - (y1 - y0) // 3, x0 + (x1 - x0) // 3 : x1 - (x1 - x0) // 3]
            if y[core].size > 50:
                assert np.mean(y[core] != y_in[core]) > 0.5, f"frame {index}: face at {xyxy} not anonymized"
                checked_others += 1
    assert checked_spared >= 20 and checked_others >= 30


def test_a_manual_region_changes_exactly_its_interpolated_box(saved_plan, tmp_path):
    plan = Plan.load(saved_plan)
    for person in plan.persons:
        plan.set_decision(person, "spare")  # only the region is anonymized
    # Corners moving 4 px per frame: every interpolated box has even integer edges (no rounding).
    plan.add_region([(10, [100, 60, 160, 120]), (20, [140, 100, 200, 160])])
    edited, out = tmp_path / "edited.json", tmp_path / "out.mp4"
    plan.save(edited)
    assert main([str(CLIP), *LOSSLESS, "--mode", "solid", "--mask", "box", "--mask-scale", "1.0", "--plan", str(edited), "-o", str(out)]) == 0
    source = _input_frames()
    for index, frame in enumerate(_yuv(out)):
        changed = frame[:360] != source[index][:360]
        expected = np.zeros(changed.shape, bool)
        if 10 <= index <= 20:
            k = index - 10
            expected[60 + 4 * k : 120 + 4 * k, 100 + 4 * k : 160 + 4 * k] = True
        assert not changed[~expected].any(), f"frame {index}: pixels outside the region changed"
        if expected.any():
            filled = frame[:360][expected]
            assert (filled == filled[0]).all() and filled[0] <= 16 and changed[expected].mean() > 0.5, f"frame {index}: region not filled black"


def test_a_blackout_span_is_black_and_the_rest_untouched(saved_plan, tmp_path):
    plan = Plan.load(saved_plan)
    for person in plan.persons:
        plan.set_decision(person, "spare")
    plan.add_blackout(30, 34)
    edited, out, report = tmp_path / "edited.json", tmp_path / "out.mp4", tmp_path / "report.json"
    plan.save(edited)
    assert main([str(CLIP), *LOSSLESS, "--plan", str(edited), "-o", str(out), "--report", str(report)]) == 0  # a decision, not a failure: exit 0
    entry = json.loads(report.read_text())["plan"]
    assert entry["blacked_out_frames"] == 5 and entry["blackouts"] == [[30, 34]] and len(entry["spared_persons"]) == len(plan.persons)
    assert json.loads(report.read_text())["obscured_frames"]["count"] == 0
    source = _input_frames()
    with av.open(str(out)) as container:
        bgr = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    for index, (frame, yuv) in enumerate(zip(bgr, _yuv(out))):
        if 30 <= index <= 34:
            assert frame.max() <= 2, f"frame {index} not black"
        else:
            assert np.array_equal(yuv, source[index])


def _no_files_but(folder: Path, names: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == names


def test_a_plan_for_another_video_is_refused(saved_plan, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    other = DATA / "bikes.mp4"
    code = main([str(other), "-q", "--plan", str(saved_plan), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "not the video this plan was made for" in err
    _no_files_but(tmp_path, set())
    # Same file, other span: the digest matches, the frame count does not.
    plan = Plan.load(saved_plan)
    plan.input.frame_count = 100
    plan.save(tmp_path / "short.json")
    code = main([str(CLIP), "-q", "--plan", str(tmp_path / "short.json"), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "90 frames" in err and "100" in err
    _no_files_but(tmp_path, {"short.json"})
    # A render takes the plan's span; another one given on the command line is refused.
    code = main([str(CLIP), "-q", "--end", "2", "--plan", str(saved_plan), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--end 2.0: the plan was made with --end 3.0" in err
    _no_files_but(tmp_path, {"short.json"})


@pytest.mark.parametrize("damage", ["truncate", "garbage", "edit"])
def test_a_truncated_or_corrupt_plan_is_one_line(saved_plan, tmp_path, capsys, damage):
    bad, out = tmp_path / "bad.json", tmp_path / "out.mp4"
    text = saved_plan.read_text()
    if damage == "truncate":
        bad.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\x00\xff" * 100)
    else:
        data = json.loads(text)
        data["tracks"][0]["frames"][0]["xyxy"] = "here"
        bad.write_text(json.dumps(data))
    code = main([str(CLIP), "-q", "--plan", str(bad), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(bad) in err, err
    _no_files_but(tmp_path, {"bad.json"})


def test_save_plan_refuses_an_existing_plan_and_images(saved_plan, tmp_path, capsys):
    assert main([str(CLIP), "-q", "--save-plan", str(saved_plan)]) == 2
    assert "already exists" in capsys.readouterr().err
    image = next((DATA / "images").glob("*.jpg"))
    assert main([str(image), "-q", "--save-plan", str(tmp_path / "x.json")]) == 2
    assert "videos only" in capsys.readouterr().err
    _no_files_but(tmp_path, set())


# Per-person seeds through the whole file runner, on synthetic clips with ground truth.


class SeedRecorder:
    """An anonymizer that paints nothing and records each track's seeds."""

    def __init__(self) -> None:
        self.seeds: dict[int, set[int]] = {}

    def apply(self, frame: Frame, faces: Detections) -> Frame:
        for track, seed in zip(faces.track_id.tolist(), faces.seed.tolist()):
            self.seeds.setdefault(track, set()).add(seed)
        return frame


def _synthetic(tmp_path, which: str) -> tuple[Path, object]:
    from faceanon_video.testing.synthetic import SyntheticClip, write_clip

    from tests.people.conftest import cut_clip, default_clip

    if which == "reentry":
        clip = default_clip(0)[0]
    else:
        # A real cut for the pipeline's shot detector: after it the background (not the faces) is
        # inverted, as if the camera had changed (the people stay, the framing and scene change).
        clip, _, cut = cut_clip(0)
        frames = [f if i < cut else np.where((ids == 0)[..., None], 255 - f, f) for i, (f, ids) in enumerate(zip(clip.frames, clip.visible_ids))]
        clip = SyntheticClip(frames, clip.gt, clip.visible_ids)
    video = tmp_path / f"{which}.mp4"
    write_clip(clip, video, tmp_path / f"{which}.json")
    return video, clip


def _gt_person_of_tracks(plan: Plan, clip) -> dict[int, int]:
    """Track id -> ground-truth actor, by the best-IoU ground-truth face of each of its frames."""
    from tests.people.conftest import gt_identity_of_tracks

    per_frame = []
    for index in range(plan.input.frame_count):
        rows = [(t, track.row(index)) for t, track in plan.tracks.items() if track.row(index) is not None]
        per_frame.append(Detections(xyxy=[plan.tracks[t].xyxy[r] for t, r in rows] or np.zeros((0, 4)), score=[1.0] * len(rows), track_id=[t for t, _ in rows]))
    return gt_identity_of_tracks(clip, per_frame)


@pytest.mark.parametrize("which", ["reentry", "cut"])
def test_seeded_run_gives_each_person_one_seed_across_tracks(tmp_path, key_file, which):
    """A normal file run in a seeded mode (diffusion) analyses first, so the same person's tracks
    (after leaving and coming back; across a shot cut) share one seed, and different people do not."""
    video, clip = _synthetic(tmp_path, which)
    config = RunConfig(mode="diffusion", key_file=str(key_file), progress=False)
    plan = analyse(video, config)
    gt = _gt_person_of_tracks(plan, clip)
    recorder = SeedRecorder()
    processor = FrameProcessor(RunConfig(mode="none", key_file=str(key_file), progress=False), anonymizer=recorder)
    process_file(video, tmp_path / "out.mp4", config, processor)
    seeds_of_actor: dict[int, set[int]] = {}
    persons_of_actor: dict[int, set[int]] = {}
    for track, actor in gt.items():
        seeds_of_actor.setdefault(actor, set()).update(recorder.seeds[track])
        persons_of_actor.setdefault(actor, set()).add(plan.tracks[track].person_id)
    # Re-entry: Obama (actor 4) walks out of the right edge and comes back; cut: all three people
    # stand in both shots. (Other actors of the re-entry clip may split where the head turns away.)
    returning = [4] if which == "reentry" else [1, 2, 3]
    for actor in returning:
        tracks = [t for t, a in gt.items() if a == actor]
        assert len(tracks) >= 2, f"actor {actor} should have two tracks, has {tracks}"
        assert len(persons_of_actor[actor]) == 1, f"actor {actor}: tracks {tracks} not linked into one person"
        assert len(seeds_of_actor[actor]) == 1, f"actor {actor}: {len(seeds_of_actor[actor])} seeds"
    # Everywhere: one seed per person id, a different one for each person.
    seed_of_person: dict[int, set[int]] = {}
    for track, seeds in recorder.seeds.items():
        seed_of_person.setdefault(plan.tracks[track].person_id, set()).update(seeds)
    assert all(len(s) == 1 for s in seed_of_person.values())
    assert len({next(iter(s)) for s in seed_of_person.values()}) == len(seed_of_person) == len(plan.persons)


def test_analyse_and_render_report_progress_and_the_summary(tmp_path, key_file):
    from faceanon_video.plan import render

    seen = []
    config = RunConfig(end_s=1.0, key_file=str(key_file), progress=False)
    plan = analyse(CLIP, config, progress=lambda done, total: seen.append(done))
    assert seen == list(range(1, 31)) and plan.input.frame_count == 30
    seen.clear()
    summary = render(CLIP, tmp_path / "out.mp4", plan, config, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (30, 30) and summary.frames == 30 and summary.faces == sum(len(plan.faces_on(i)) for i in range(30))
    assert len(_yuv(tmp_path / "out.mp4")) == 30


def test_failed_frames_of_the_analysis_and_of_the_render_are_obscured(tmp_path, monkeypatch):
    from faceanon_video.testing import faults

    plan_path, out = tmp_path / "p.json", tmp_path / "out.mp4"
    monkeypatch.setenv(faults.ENV, "detect:frames=20-23")
    faults.reset()
    assert main([str(CLIP), "--end", "2", "-q", "--save-plan", str(plan_path)]) == 5  # written, with frames obscured
    plan = Plan.load(plan_path)
    failed = {f for f in range(60) if plan.obscure_reason(f)}
    assert {20, 22} <= failed and all("InjectedFault" in plan.obscure_reason(f) for f in failed)
    monkeypatch.setenv(faults.ENV, "anonymize:frames=40-41")
    faults.reset()
    assert main([str(CLIP), *LOSSLESS, "--plan", str(plan_path), "-o", str(out)]) == 5
    monkeypatch.delenv(faults.ENV)
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    black = {i for i, f in enumerate(frames) if f.max() <= 2}
    assert black == failed | {40, 41}


def test_disagreement_rule_on_literal_boxes():
    """A second detector's face disagrees when it is wide enough and half of the smaller box of it
    and every tracked face lies outside the other (the tracker pads its boxes)."""
    tracked = np.array([[100, 100, 160, 170], [300, 50, 340, 100]], float)
    second = np.array([
        [105, 110, 150, 160],  # inside a padded track: seen
        [90, 90, 170, 180],  # around a track (a bigger box of the same face): seen
        [140, 100, 200, 170],  # a third of it on track 1 (smaller box: 60x70, overlap 20x70): disagrees
        [500, 300, 540, 350],  # where no track is: disagrees
        [10, 10, 20, 20],  # 10 px wide, under --min-face 24: ignored
    ], float)
    assert disagreements(second, tracked, 24).tolist() == [False, False, True, True, False]
    assert disagreements(second, np.zeros((0, 4)), 24).tolist() == [True, True, True, True, False]
    assert disagreements(np.zeros((0, 4)), tracked, 24).tolist() == []


def test_a_face_the_first_detector_misses_is_a_second_detector_candidate(saved_plan, tmp_path):
    """With YuNet's threshold raised to 0.99 it keeps almost none of the crowd's faces; CenterFace,
    every SECOND_DETECTOR_EVERY-th frame, finds them where the hobbled plan has no track, and each
    is a face the normal plan does track (a real face, not a false alarm)."""
    normal = Plan.load(saved_plan)
    assert normal.settings["second_detector"] == {"detector": "centerface", "every": SECOND_DETECTOR_EVERY, "thresh": 0.5}
    path = tmp_path / "hobbled.plan.json"
    assert main([str(CLIP), *SPAN, "-q", "--thresh", "0.99", "--save-plan", str(path)]) == 0
    hobbled = Plan.load(path)
    second = np.array(candidate_sources(hobbled.candidates)) == "second_detector"
    frames = hobbled.candidates.data["frame"][second]
    assert len(frames) >= 3 and set((frames % SECOND_DETECTOR_EVERY).tolist()) == {0}
    normal_second = np.array(candidate_sources(normal.candidates)) == "second_detector"
    for frame, box in zip(frames.tolist(), hobbled.candidates.xyxy[second]):
        flagged_too = normal.candidates.xyxy[normal_second & (normal.candidates.data["frame"] == frame)]
        if disagreements(box[None], flagged_too, 24).all():  # not one the normal plan flags as well
            assert not disagreements(box[None], normal.faces_on(frame).xyxy, 24).any()  # the normal plan tracks it
        assert disagreements(box[None], hobbled.faces_on(frame).xyxy, 24).all()  # the hobbled plan does not
    assert normal_second.sum() < second.sum()

    path = tmp_path / "off.plan.json"
    assert main([str(CLIP), *SPAN, "-q", "--thresh", "0.99", "--no-second-detector", "--save-plan", str(path)]) == 0
    off = Plan.load(path)
    assert off.settings["second_detector"] is None and set(candidate_sources(off.candidates)) <= {"low_score"}


@pytest.mark.parametrize("option", ["--spare", "--only"])
def test_spare_and_only_are_refused_with_a_plan(saved_plan, tmp_path, capsys, option):
    """A render does exactly what the plan says: --spare on it once left faces visible that the plan
    anonymizes (104 of 275 frames of the clip); at the analysis it was silently dropped."""
    photo = str(DATA / "images" / "identities" / "lin-manuel-miranda.png")
    for args in (["--plan", str(saved_plan), "-o", str(tmp_path / "out.mp4")], ["--save-plan", str(tmp_path / "p.json")]):
        code = main([str(CLIP), "-q", *args, option, photo])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0 and option in err, err
    _no_files_but(tmp_path, set())
    # The review page renders with the review command's options.
    code = main(["review", str(CLIP), "--plan", str(saved_plan), "-o", str(tmp_path / "out.mp4"), "--no-browser", option, photo])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and option in err, err
    _no_files_but(tmp_path, set())


def test_a_span_the_plan_does_not_have_is_named_plainly(saved_plan, tmp_path, capsys):
    code = main([str(CLIP), "-q", "--start", "0", "--plan", str(saved_plan), "-o", str(tmp_path / "out.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "None" not in err and "no --start" in err, err  # was "made for --start None"
    _no_files_but(tmp_path, set())
