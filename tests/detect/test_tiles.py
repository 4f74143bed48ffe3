"""detect.tiles: the grid covers every pixel with overlapping tiles, the schedule visits every tile,
and an enlarged tile finds small faces the shrunk full-frame pass misses."""

import numpy as np
import pytest

from faceanon_video.detect import build_detector
from faceanon_video.detect.tiles import TiledDetector, schedule_period, tile_grid
from faceanon_video.testing.recall import recall_clip
from faceanon_video.types import Frame


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (3840, 2160), (854, 480)])
def test_grid_covers_the_frame_and_overlaps_enough_for_a_face(size):
    width, height = size
    grid = tile_grid(width, height, side_px=470, overlap_px=64)
    covered = np.zeros((height, width), np.int32)
    for x0, y0, x1, y1 in grid:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1
    # Every 64 px square lies wholly inside some tile.
    for x in range(0, width - 64, 37):
        for y in range(0, height - 64, 37):
            assert any(x0 <= x and y0 <= y and x + 64 <= x1 and y + 64 <= y1 for x0, y0, x1, y1 in grid)


@pytest.mark.parametrize("n_tiles", [1, 2, 6, 8, 12])
@pytest.mark.parametrize("every", [1, 2, 3, 4])
def test_schedule_visits_every_tile_within_one_period_of_passes(n_tiles, every):
    period = schedule_period(n_tiles)
    for start in range(0, 3 * period * every, every):
        seen = {((start + k * every) % period) % n_tiles for k in range(period)}
        assert seen == set(range(n_tiles))


def test_the_tile_finds_small_grey_faces_the_shrunk_pass_misses():
    clip = recall_clip("720p", 24)
    tiled = build_detector("yunet", min_face_px=24)
    assert isinstance(tiled, TiledDetector)
    shrunk = tiled.full
    gt_id = 1  # John Savage, 26 px, grey-scale (synthetic.recall_scenario)
    hits_tiled = hits_shrunk = visits = 0
    for i, bgr in enumerate(clip.frames):
        face = next((f for f in clip.gt_frames[i]["faces"] if f["id"] == gt_id and f["visible"] > 0.9), None)
        if face is None:
            continue
        frame = Frame(bgr=bgr, index=i)
        x0, y0, x1, y1 = tiled.tile_for(i, frame.shape)
        fx0, fy0, fx1, fy1 = face["xyxy"]
        if not (x0 <= fx0 and y0 <= fy0 and fx1 <= x1 and fy1 <= y1):
            continue
        visits += 1
        centre = np.array([(fx0 + fx1) / 2, (fy0 + fy1) / 2])
        hit = lambda d: bool(len(d)) and bool(np.any(np.all((d.xyxy[:, :2] <= centre) & (centre <= d.xyxy[:, 2:]), axis=1)))  # noqa: E731
        hits_tiled += hit(tiled.detect(frame))
        hits_shrunk += hit(shrunk.detect(frame))
    assert visits >= 2
    assert hits_shrunk == 0 and hits_tiled >= visits - 1


def test_searched_is_the_frames_tile_for_small_faces_and_everywhere_for_large_ones():
    tiled = build_detector("yunet", min_face_px=24)
    shape = (720, 1280, 3)
    grid = tiled.tiles(shape)
    x0, y0, x1, y1 = tiled.tile_for(0, shape)
    inside = [x0 + 10, y0 + 10, x0 + 40, y0 + 40]
    other = next(t for t in grid if t[0] >= x1 or t[2] <= x0 or t[1] >= y1 or t[3] <= y0)
    outside = [other[0] + 10, other[1] + 10, other[0] + 40, other[1] + 40]
    large = [other[0] + 10, other[1] + 10, other[0] + 110, other[1] + 110]  # 100 px: the shrunk pass sees it at 58 px
    assert tiled.searched(0, shape, np.array([inside, outside, large], np.float32)).tolist() == [True, False, True]
