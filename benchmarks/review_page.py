"""The review page's targets, measured in headless Chromium, and the README's screenshot.

    python benchmarks/review_page.py [--repeats 40] [--screenshot docs/review.png]

1. Seeking on a 1080p clip (tests/data/short_hamilton_clip.mp4 re-encoded, ``clips.resolution_clip``):
   random frames typed into the frame box, timed in the page from the request to the image shown
   (decode from the keyframe before, JPEG, transfer, browser decode); and through plain HTTP.
2. The timeline of a 10-minute clip (15000 frames at 25 fps, a synthetic plan of 60 persons, 600
   low-confidence candidates, obscured spans): drawing the canvas, and fetching + drawing.
3. The screenshot: the real plan of the Hamilton clip (``planning.analyse``), one person spared and
   a box drawn, on a frame with many faces.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.clips import HAMILTON, resolution_clip
from faceanon_video.config import RunConfig
from faceanon_video.plan import (
    Person,
    Plan,
    PlanInput,
    PlanTrack,
    Span,
    candidates_detections,
)
from faceanon_video.report import sha256_file
from faceanon_video.review.server import ReviewServer
from faceanon_video.review.session import ReviewSession
from faceanon_video.testing.browser import chromium


def synthetic_plan(video: Path, n_frames: int, width: int, height: int, fps: float, n_persons: int, seed: int = 0) -> Plan:
    """``n_persons`` persons, each with one track over a random span, plus candidates and obscured spans."""
    rng = np.random.default_rng(seed)
    plan = Plan(PlanInput(video.name, sha256_file(video), n_frames, width, height, fps, "1/12800"))
    for person_id in range(1, n_persons + 1):
        start = int(rng.integers(0, n_frames - 50))
        frames = np.arange(start, min(n_frames, start + int(rng.integers(50, n_frames // 4))))
        x0, y0 = rng.uniform(0, width * 0.8), rng.uniform(0, height * 0.7)
        size = rng.uniform(0.05, 0.15) * width
        xyxy = np.tile([x0, y0, x0 + size, y0 + size * 1.2], (len(frames), 1))
        plan.tracks[person_id] = PlanTrack(person_id, person_id, frames, xyxy, np.full((len(frames), 5, 2), np.nan), np.full(len(frames), 0.9),
                                           np.ones(len(frames), bool))
        plan.persons[person_id] = Person(person_id, "anonymize", [person_id])
    n_candidates = 10 * n_persons
    boxes = np.tile([10.0, 10.0, 30.0, 34.0], (n_candidates, 1))
    plan.candidates = candidates_detections(np.sort(rng.integers(0, n_frames, n_candidates)), boxes, np.full(n_candidates, 0.3))
    plan.obscured = [Span(int(s), int(s) + 5, "RuntimeError: benchmark") for s in rng.integers(0, n_frames - 6, 5)]
    assert not plan.validate(), plan.validate()[:3]
    return plan


def long_clip(path: Path, n_frames: int = 15000, fps: int = 25, size: tuple[int, int] = (160, 96)) -> Path:
    if path.exists():
        return path
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(n_frames):
            image = np.full((size[1], size[0], 3), (i * 7) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def serve(video: Path, plan: Plan, work: Path) -> ReviewServer:
    session = ReviewSession(video, plan, work / f"{video.stem}.plan.json", work / f"{video.stem}_out.mp4", RunConfig(progress=False))
    return ReviewServer(session).start()


def wait(driver, condition, timeout_s: float = 30):
    from selenium.common.exceptions import (
        StaleElementReferenceException,  # the page redrew the element: look again
    )
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, ignored_exceptions=[StaleElementReferenceException], poll_frequency=0.005).until(lambda d: condition())


def open_page(driver, server: ReviewServer) -> None:
    from selenium.webdriver.common.by import By

    driver.get(server.url)
    wait(driver, lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")


def seek_in_page(driver, frame: int) -> float:
    """Type a frame number; the page's own measure from request to image shown (ms)."""
    return driver.execute_async_script(
        """const [frame, done] = arguments;
        const img = document.getElementById('frame');
        const box = document.getElementById('frame-number');
        const started = performance.now();
        const check = () => img.dataset.frame === String(frame) && img.complete ? done(performance.now() - started) : requestAnimationFrame(check);
        box.value = frame; box.dispatchEvent(new Event('change'));
        check();""",
        frame,
    )


def stats(values: list[float]) -> str:
    return f"min {min(values):.0f} / median {statistics.median(values):.0f} / max {max(values):.0f} ms (n={len(values)})"


def bench_seek(driver, work: Path, repeats: int) -> None:
    video = resolution_clip(work, 1080)
    from faceanon_video.review.frames import FrameSource

    probe = FrameSource(video)
    keys = [probe._position[k] for k in probe.keyframe_pts] + [probe.frame_count]
    probe.close()
    gops = np.diff(keys)
    plan = synthetic_plan(video, keys[-1], 1920, 1080, 29.97, n_persons=4)
    server = serve(video, plan, work)
    try:
        open_page(driver, server)
        rng = np.random.default_rng(1)
        frames = rng.integers(0, keys[-1], repeats).tolist()
        worst = [k - 1 for k in keys[1:]]  # last frame of each GOP: the longest decode from its keyframe
        seek_in_page(driver, keys[-1] // 2)  # warm-up: the page's first frame request opens the decoder threads
        page = [seek_in_page(driver, f) for f in frames]
        page_worst = [seek_in_page(driver, f) for f in worst]
        driver.execute_script("document.querySelector('input[name=view][value=preview]').click()")
        preview = [seek_in_page(driver, f) for f in frames[: repeats // 2]]
        # Plain HTTP, with the CPU time this process spent (decoder threads, JPEG, server): what a
        # request costs whatever else the machine runs.
        http, cpu, cpu_worst = [], [], []
        for f in frames + worst:
            server.session.frames._cache.clear()
            server.session.frames._packets = None  # every request seeks
            started, started_cpu = time.perf_counter(), time.process_time()
            with urllib.request.urlopen(server.url.replace("/?", f"/frame/{f}.jpg?"), timeout=10) as response:
                response.read()
            (cpu_worst if f in worst else cpu).append(1000 * (time.process_time() - started_cpu))
            if f not in worst:
                http.append(1000 * (time.perf_counter() - started))
    finally:
        server.stop()
    print(f"1080p clip: {keys[-1]} frames, GOPs of {gops.min()}-{gops.max()} frames (median {int(np.median(gops))})")
    print(f"  seek in the page, random frames, original view: {stats(page)}")
    print(f"  seek in the page, last frame of each GOP:         {stats(page_worst)}")
    print(f"  seek in the page, random frames, preview (blur):  {stats(preview)}")
    print(f"  HTTP only (frame request -> JPEG bytes):          {stats(http)}")
    print(f"  CPU time of a request, random frames:             {stats(cpu)}")
    print(f"  CPU time of a request, last frame of each GOP:    {stats(cpu_worst)}")


def bench_timeline(driver, work: Path, repeats: int) -> None:
    video = long_clip(work / "ten_minutes.mp4")
    plan = synthetic_plan(video, 15000, 160, 96, 25.0, n_persons=60)
    server = serve(video, plan, work)
    try:
        open_page(driver, server)
        draw, total = [], []
        for _ in range(repeats):
            draw.append(driver.execute_script("drawTimeline(); return Number(document.getElementById('timeline').dataset.renderMs);"))
            total.append(driver.execute_async_script(
                """const done = arguments[0]; const started = performance.now();
                api('GET', '/api/timeline').then((t) => { S.timeline = t; drawTimeline(); renderMisses(); done(performance.now() - started); });"""))
    finally:
        server.stop()
    rows = sum(len(t) for t in plan.tracks.values())
    print(f"timeline, 15000 frames (10 min at 25 fps), {len(plan.persons)} persons, {rows} face rows, {len(plan.candidates)} candidates:")
    print(f"  draw the canvas:                  {stats(draw)}")
    print(f"  fetch /api/timeline + draw + list: {stats(total)}")


def screenshot(driver, work: Path, path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from faceanon_video.planning import analyse

    plan = analyse(HAMILTON, RunConfig(progress=False))
    server = serve(HAMILTON, plan, work)
    try:
        open_page(driver, server)
        driver.find_element(By.CSS_SELECTOR, '.person[data-person="1"] button.decision').click()
        seek_in_page(driver, 224)
        overlay = driver.find_element(By.ID, "overlay")
        k = overlay.size["width"] / 640
        driver.find_element(By.ID, "draw").click()
        (ActionChains(driver).move_to_element_with_offset(overlay, int(230 * k - overlay.size["width"] / 2), int(232 * k - overlay.size["height"] / 2))
         .click_and_hold().move_by_offset(int(40 * k), int(50 * k)).release().perform())
        wait(driver, lambda: len(server.session.plan.regions) == 1)
        time.sleep(1)  # thumbnails
        driver.save_screenshot(str(path))
    finally:
        server.stop()
    print(f"screenshot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--screenshot", type=Path, help="also save the README's screenshot here (e.g. docs/review.png)")
    args = parser.parse_args()
    driver = chromium(1440, 900)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            bench_seek(driver, work, args.repeats)
            bench_timeline(driver, work, max(5, args.repeats // 4))
            if args.screenshot:
                screenshot(driver, work, args.screenshot)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
