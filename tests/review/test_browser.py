"""End to end in a real browser (headless Chromium via Selenium): review a real clip, spare a person,
draw a missed face, save, render, and check the output's pixels. Skipped without chromium."""

from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pytest

from faceanon_video.config import RunConfig
from faceanon_video.planning import analyse
from faceanon_video.testing.browser import missing
from tests.conftest import BIKES, decode_all, far_from_boxes_mask
from tests.review.conftest import http_status

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"no browser to drive: {missing()}")

REGION_XYXY = (300, 100, 400, 200)  # a "missed face" drawn on frames 200-220, where bikes.mp4 has no track
REGION_FRAMES = (200, 220)


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    from faceanon_video.review.server import ReviewServer
    from faceanon_video.review.session import ReviewSession

    folder = tmp_path_factory.mktemp("review")
    plan = analyse(BIKES, RunConfig(progress=False))
    # Lossless encoding (--crf 0): pixels the plan does not touch come out bit for bit as they went in.
    session = ReviewSession(BIKES, plan, folder / "bikes.plan.json", folder / "bikes_reviewed.mp4", RunConfig(progress=False, crf=0),
                            [folder / "bikes_reviewed.report.json"])
    server = ReviewServer(session).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from faceanon_video.testing.browser import chromium

    driver = chromium(1400, 900)
    yield driver
    driver.quit()


def wait(driver, condition, timeout_s=20):
    from selenium.common.exceptions import (
        StaleElementReferenceException,  # the page redrew the element: look again
    )
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, ignored_exceptions=[StaleElementReferenceException], poll_frequency=0.1).until(lambda d: condition())


def box_diff(a: np.ndarray, b: np.ndarray, xyxy) -> float:
    x0, y0, x1, y1 = (round(v) for v in xyxy)
    x0, y0 = max(0, x0), max(0, y0)
    return float(np.abs(a[y0:y1, x0:x1].astype(int) - b[y0:y1, x0:x1]).mean())


def test_review_spare_draw_save_render_then_the_same_plan_on_the_command_line(review, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    session = review.session
    plan = session.plan
    d = browser
    d.get(review.url)
    wait(d, lambda: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")

    # The page lists every person of the plan, one card each, with thumbnails from their tracks.
    cards = d.find_elements(By.CSS_SELECTOR, "#persons .person")
    assert [int(c.get_attribute("data-person")) for c in cards] == sorted(plan.persons)
    wait(d, lambda: d.execute_script("return [...document.querySelectorAll('.thumbs img')].every(i => i.complete && i.naturalHeight === 96)"))

    # Spare person 1 (the man on frames 30-45).
    spared = plan.persons[1]
    d.find_element(By.CSS_SELECTOR, '.person[data-person="1"] button.decision').click()
    wait(d, lambda: "spare" in d.find_element(By.CSS_SELECTOR, '.person[data-person="1"]').get_attribute("class"))
    assert spared.decision == "spare"

    # Seek with the keyboard and the frame box, then draw a box on frame 200.
    body = d.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_RIGHT)
    wait(d, lambda: d.find_element(By.ID, "frame").get_attribute("data-frame") == "1")
    number = d.find_element(By.ID, "frame-number")
    number.clear()
    number.send_keys(str(REGION_FRAMES[0]), Keys.ENTER)
    wait(d, lambda: d.find_element(By.ID, "frame").get_attribute("data-frame") == str(REGION_FRAMES[0]))
    overlay = d.find_element(By.ID, "overlay")
    k = overlay.size["width"] / session.frames.width
    x0, y0, x1, y1 = REGION_XYXY
    d.find_element(By.ID, "draw").click()
    center_x, center_y = overlay.size["width"] / 2, overlay.size["height"] / 2
    (ActionChains(d).move_to_element_with_offset(overlay, int(x0 * k - center_x), int(y0 * k - center_y)).click_and_hold()
     .move_by_offset(int((x1 - x0) * k / 2), int((y1 - y0) * k / 2)).move_by_offset(int((x1 - x0) * k / 2), int((y1 - y0) * k / 2))
     .release().perform())
    wait(d, lambda: len(plan.regions) == 1)
    (region,) = plan.regions.values()
    np.testing.assert_allclose(region.keyframes[0].xyxy, REGION_XYXY, atol=2.5 / k)
    assert region.keyframes[0].frame == REGION_FRAMES[0]
    # The list is drawn again once the new region is selected (the next box drawn adds a keyframe to it).
    end = wait(d, lambda: d.find_element(By.CSS_SELECTOR, f'.region.selected[data-region="{region.region_id}"] input.region-end'))
    end.send_keys(str(REGION_FRAMES[1]), Keys.ENTER)
    wait(d, lambda: region.last_frame == REGION_FRAMES[1])

    # Save (the command line's plan path), render, download.
    d.find_element(By.ID, "save").click()
    wait(d, lambda: d.find_element(By.ID, "plan-status").get_attribute("class") == "saved")
    d.find_element(By.ID, "render").click()
    wait(d, lambda: d.find_element(By.ID, "render-status").get_attribute("data-state") in ("done", "failed"), timeout_s=90)
    assert d.find_element(By.ID, "render-status").get_attribute("data-state") == "done", d.find_element(By.ID, "render-status").text
    link = d.find_element(By.ID, "download-video").get_attribute("href")
    with urllib.request.urlopen(link, timeout=10) as response:
        assert response.read() == session.output.read_bytes()
    report = d.find_element(By.CSS_SELECTOR, "a.download-report").get_attribute("href")
    with urllib.request.urlopen(report, timeout=10) as response:
        assert b'"sha256"' in response.read()
    assert d.get_log("browser") == []  # no script error, nothing refused by the page's policy

    # The output changed exactly there: the spared face is as it was, the drawn box is anonymized
    # on its frames only, the other faces are anonymized, and pixels far from all of them are untouched.
    before, _ = decode_all(BIKES)
    after, _ = decode_all(session.output)
    assert len(after) == len(before) == 250
    for track_id in spared.track_ids:
        track = plan.tracks[track_id]
        diffs = [box_diff(after[f], before[f], box) for f, box in zip(track.frames.tolist(), track.xyxy)]
        assert max(diffs) == 0, diffs
    others = [t for t in plan.tracks.values() if t.person_id != 1 and t.detected.any()]
    assert others and all(np.median([box_diff(after[f], before[f], b) for f, b in zip(t.frames.tolist(), t.xyxy)]) > 5 for t in others)
    first, last = REGION_FRAMES
    assert min(box_diff(after[f], before[f], REGION_XYXY) for f in range(first, last + 1)) > 8
    assert max(box_diff(after[f], before[f], REGION_XYXY) for f in (first - 1, last + 1)) == 0
    checked = 0
    for f, (a, b) in enumerate(zip(after, before)):
        boxes = [t.xyxy[t.row(f)].tolist() for t in plan.tracks.values() if t.row(f) is not None]
        boxes += [list(REGION_XYXY)] if first <= f <= last else []
        far = far_from_boxes_mask(a.shape, np.array(boxes, np.float32).reshape(-1, 4))
        if far.mean() > 0.2:
            checked += 1
            assert np.array_equal(a[far], b[far]), f"frame {f}"
    assert checked > 200

    # The plan saved from the page, given on the command line, renders to the same pixels.
    from faceanon_video.cli import main

    again = tmp_path / "cli.mp4"
    assert main([str(BIKES), "--plan", str(session.plan_path), "-o", str(again), "--crf", "0", "-q"]) == 0
    cli_frames, _ = decode_all(again)
    assert all(np.array_equal(a, b) for a, b in zip(after, cli_frames)) and len(cli_frames) == len(after)


def test_token_required_and_loopback_only(review):
    base = review.url.split("?")[0]
    assert http_status(review.url) == 200
    assert http_status(base) == 403
    assert http_status(base + "api/state?token=nope") == 403
    assert http_status(review.url.replace("/?", "/api/state?")) == 200
    assert review.server.socket.getsockname()[0] == "127.0.0.1"
    # From any other address of this machine, nothing listens on that port.
    others = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1", "127.0.1.1"}
    for address in others:
        with socket.socket() as probe, pytest.raises(OSError):
            probe.settimeout(2)
            probe.connect((address, review.port))


def test_keys_timeline_merge_and_split_in_the_page(review, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d, plan = browser, review.session.plan
    d.get(review.url)
    wait(d, lambda: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    shown = lambda: int(d.find_element(By.ID, "frame").get_attribute("data-frame") or -1)
    body = d.find_element(By.TAG_NAME, "body")
    body.send_keys("l")  # play
    wait(d, lambda: shown() >= 5)
    body.send_keys("k")  # pause
    paused = shown()
    wait(d, lambda: d.find_element(By.ID, "play").text == "Play")
    assert shown() - paused <= 1
    body.send_keys(Keys.END)
    wait(d, lambda: shown() == 249)
    body.send_keys("j")  # back one second (25 fps)
    wait(d, lambda: shown() == 224)
    timeline = d.find_element(By.ID, "timeline")
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(d).move_to_element(timeline).click().perform()  # the middle of the clip
    wait(d, lambda: abs(shown() - 125) <= 2)
    body.send_keys(Keys.HOME)
    wait(d, lambda: shown() == 0)
    body.send_keys("n")  # the first possible miss
    first_miss = review.session.timeline()["misses"][0]["frame"]
    wait(d, lambda: shown() == first_miss)

    # Merge the first two persons (checkboxes, then the button); split a track at the shown frame.
    a, b = sorted(plan.persons)[:2]
    for person in (a, b):
        d.find_element(By.CSS_SELECTOR, f'.person[data-person="{person}"] input.merge-pick').click()
    d.find_element(By.ID, "merge").click()
    wait(d, lambda: b not in plan.persons)
    wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#persons .person")) == len(plan.persons))
    track = max(plan.tracks.values(), key=len)
    middle = int(track.frames[len(track) // 2])
    number = d.find_element(By.ID, "frame-number")
    number.clear()
    number.send_keys(str(middle), Keys.ENTER)
    wait(d, lambda: shown() == middle)
    persons = len(plan.persons)
    d.find_element(By.CSS_SELECTOR, f'li[data-track="{track.track_id}"] button.split').click()
    wait(d, lambda: len(plan.persons) == persons + 1)
    assert plan.tracks[track.track_id].last_frame == middle - 1
    assert d.get_log("browser") == []
