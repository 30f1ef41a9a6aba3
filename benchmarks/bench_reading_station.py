"""Reading-station load benchmark (``make bench-reading-station``): writes ``docs/benchmarks/reading_station.md``
(+ ``reading_station/results.json``) and the screenshots ``docs/images/reading_station_{reader,organizer}.png``.

Load: one ``fastmrrecon reading-station`` process serving a study of 6 cases x 3 versions of 256 x 256 x 24
voxels (noisy images: their PNG slices are the costliest to encode) to 10 simulated readers at once, all on this
machine's cores (the readers' own CPU included):

- 9 HTTP readers (threads of this process), each replaying what the reader page asks for: a slice change is
  the three versions' PNGs of the new slice requested in parallel on keep-alive connections; ``--rate`` changes
  per second while scrolling (random walks through the slices), a score every ``--score-every`` seconds and the
  next case when a case is scored;
- 1 real Chromium page (Playwright) scrolling with the mouse wheel at the same rate: its latency is the page's
  own ``window.__latencies`` (wheel event to all three images decoded, prefetching as a reader's page does).

Latency = time from a slice change to the last of its three images received (HTTP readers) or decoded (browser).
Then the server is killed (SIGKILL) while the readers keep scoring; every score the station acknowledged
(HTTP 200) must be in the study file, with the value last acknowledged (or a later one of the same image that the
station committed but could not answer before it died): ``lost`` counts those that are not.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))
from station_study import chromium_path, free_port, make_station_study, start_station  # noqa: E402

from FastMRReconLib.study.reader_study import ReaderStudy  # noqa: E402

OUT = REPO / "docs" / "benchmarks"
IMAGES = REPO / "docs" / "images"
SHAPE = (24, 256, 256)
CASES = tuple(f"case {index + 1}" for index in range(6))
READERS = 10
TARGET_MEDIAN, TARGET_P95 = 150.0, 400.0


def chromium() -> str:
    executable = chromium_path()
    if executable is None:
        raise SystemExit("Chromium is needed: apt-get install chromium")
    return executable


def reader_arguments(readers: list[str]) -> list[str]:
    return [argument for name in readers for argument in ("--reader", name)]


class HttpReader(threading.Thread):
    """One simulated reader (module docstring)."""

    def __init__(
        self,
        name: str,
        link: str,
        rate: float,
        score_every: float,
        stop: threading.Event,
        killed: threading.Event,
        seed: int,
    ):
        super().__init__(daemon=True)
        parts = urlsplit(link)
        self.name_, self.host, self.port, self.base = name, parts.hostname, parts.port, parts.path
        self.rate, self.score_every, self.stop, self.killed = rate, score_every, stop, killed
        self.random = random.Random(seed)
        self.latencies: list[float] = []
        self.acknowledged: dict[tuple[int, str], int] = {}
        #: Scores sent after the last acknowledged one of the same image, without an answer: the station may
        #: have committed one of them before it was killed.
        self.unanswered: dict[tuple[int, str], set[int]] = {}
        self.failures = 0
        self.connections = [http.client.HTTPConnection(self.host, self.port, timeout=30) for _ in range(3)]
        self.pool = ThreadPoolExecutor(3)

    def get(self, index: int, path: str) -> bytes:
        connection = self.connections[index]
        try:
            connection.request("GET", self.base + path)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            raise
        if response.status != 200:
            raise RuntimeError(f"{response.status} {body[:80]!r}")
        return body

    def post_score(self, k: int, label: str, score: int) -> bool:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            body = json.dumps({"k": k, "label": label, "score": score})
            connection.request("POST", self.base + "api/score", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def run(self) -> None:
        try:
            state = json.loads(self.get(0, "api/state"))
        except Exception:
            self.failures += 1
            return
        k, labels, slices = state["k"], state["labels"], state["slices"]
        current, given = slices // 2, set()
        next_score = time.perf_counter() + self.random.uniform(0, self.score_every)
        while not self.stop.is_set():
            began = time.perf_counter()
            current = min(max(current + self.random.choice((-1, 1)), 0), slices - 1)
            paths = [f"img/{k}/{label}/{current}.png" for label in labels]
            try:
                list(self.pool.map(self.get, range(3), paths))
                self.latencies.append(1000 * (time.perf_counter() - began))
            except Exception:
                self.failures += 0 if self.killed.is_set() else 1
            if time.perf_counter() >= next_score:
                label = self.random.choice([label for label in labels if label not in given] or labels)
                score = self.random.randint(1, 5)
                if self.post_score(k, label, score):
                    self.acknowledged[(k, label)] = score
                    self.unanswered[(k, label)] = set()
                    given.add(label)
                else:
                    self.unanswered.setdefault((k, label), set()).add(score)
                next_score += self.score_every
                if len(given) == len(labels) and k + 1 < state["n"]:
                    k, given = k + 1, set()
            time.sleep(max(0.0, 1 / self.rate - (time.perf_counter() - began)))


def browser_reader(link: str, rate: float, seconds: float, results: dict) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(link)
        page.wait_for_function("() => window.__latencies.length > 0")
        page.hover("#image-A")
        page.evaluate("() => { window.__latencies.length = 0; }")
        direction, ended = 120, time.perf_counter() + seconds
        while time.perf_counter() < ended:
            began = time.perf_counter()
            text = page.text_content("#slice-text") or ""
            if "slice 1 /" in text:
                direction = 120
            elif f"/ {SHAPE[0]}," in text and text.startswith(f"slice {SHAPE[0]} "):
                direction = -120
            page.mouse.wheel(0, direction)
            time.sleep(max(0.0, 1 / rate - (time.perf_counter() - began)))
        time.sleep(1.0)
        results["latencies"] = page.evaluate("() => window.__latencies")
        browser.close()


def database_scores(study: Path, readers: dict[str, HttpReader]) -> dict[tuple[str, int, str], int]:
    """``{(reader, k, label): score}`` in the study file."""
    with ReaderStudy.open(study) as opened, sqlite3.connect(study) as connection:
        rows = connection.execute("SELECT reader, case_id, label, score FROM scores").fetchall()
        order = {name: opened.case_order(name) for name in readers}
    return {(reader, order[reader].index(case_id), label): score for reader, case_id, label, score in rows}


def summarise(values: list[float]) -> dict:
    array = np.asarray(values, float)
    return {
        "changes": int(array.size),
        "median_ms": float(np.median(array)),
        "p95_ms": float(np.percentile(array, 95)),
        "max_ms": float(array.max()),
    }


def load_run(folder: Path, rate: float, score_every: float, seconds: float) -> dict:
    study = make_station_study(folder, shape=SHAPE, cases=CASES)
    names = [f"reader {index + 1}" for index in range(READERS)]
    port = free_port()
    process, links = start_station(study, port, *reader_arguments(names))
    stop, killed = threading.Event(), threading.Event()
    http_readers = {
        name: HttpReader(name, links[f"reader {name!r}"], rate, score_every, stop, killed, seed)
        for seed, name in enumerate(names[1:])
    }
    browser_results: dict = {}
    browser = threading.Thread(
        target=browser_reader, args=(links[f"reader {names[0]!r}"], rate, seconds, browser_results)
    )
    load_before = os.getloadavg()
    for reader in http_readers.values():
        reader.start()
    browser.start()
    browser.join()
    killed.set()
    process.send_signal(signal.SIGKILL)  # mid-study: the readers are still scoring
    process.wait(timeout=30)
    time.sleep(2 * score_every)  # scores given while the server is down fail, and are not acknowledged
    stop.set()
    for reader in http_readers.values():
        reader.join(timeout=60)
    stored = database_scores(study, http_readers)
    lost = sum(
        stored.get((name, k, label)) not in {score} | reader.unanswered.get((k, label), set())
        for name, reader in http_readers.items()
        for (k, label), score in reader.acknowledged.items()
    )
    acknowledged = [score for reader in http_readers.values() for score in reader.acknowledged.values()]
    with sqlite3.connect(study) as connection:
        integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
    http_latencies = [value for reader in http_readers.values() for value in reader.latencies]
    return {
        "readers": READERS,
        "rate_per_s": rate,
        "score_every_s": score_every,
        "seconds": seconds,
        "http": summarise(http_latencies),
        "browser": summarise(browser_results.get("latencies", [float("nan")])),
        "image_failures_before_kill": sum(reader.failures for reader in http_readers.values()),
        "scores_acknowledged": len(acknowledged),
        "scores_lost": int(lost),
        "integrity": integrity,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def screenshots(work: Path) -> None:
    """The reader and organizer views on the demo's study (``fastmrrecon sample-data`` + ``demo``)."""
    from playwright.sync_api import sync_playwright

    head, reconstruction = work / "head", work / "reconstruction"
    if not (reconstruction / "reader_study.sqlite").is_file():
        fastmrrecon = [sys.executable, "-m", "FastMRReconLib.cli"]
        subprocess.run([*fastmrrecon, "sample-data", str(head)], check=True)
        subprocess.run([*fastmrrecon, "demo", str(head), str(reconstruction)], check=True)
    study = reconstruction / "reader_study_station.sqlite"
    shutil.copyfile(reconstruction / "reader_study.sqlite", study)
    for leftover in reconstruction.glob("reader_study_station.sqlite.station.json"):
        leftover.unlink()
    process, links = start_station(study, free_port(), *reader_arguments(["Dr Example"]))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(links["reader 'Dr Example'"])
            page.wait_for_function("() => window.__latencies.length > 0")
            page.check("input[name=score-A][value='4']")
            page.wait_for_selector("#saved-A:text-is('saved')")
            page.check("input[name=score-B][value='3']")
            page.wait_for_selector("#saved-B:text-is('saved')")
            IMAGES.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(IMAGES / "reading_station_reader.png"))
            organizer = browser.new_page(viewport={"width": 1200, "height": 1100})
            organizer.goto(links["organizer (unblinded: keep it private)"])
            organizer.wait_for_function("() => document.getElementById('chart').naturalWidth > 0")
            organizer.screenshot(path=str(IMAGES / "reading_station_organizer.png"), full_page=True)
            browser.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def render(results: dict, command: str) -> None:
    run = results["load"]
    verdict = lambda value, target: "met" if value <= target else "missed"  # noqa: E731
    rows = "\n".join(
        f"| {name} | {run[key]['changes']} | {run[key]['median_ms']:.1f} | {run[key]['p95_ms']:.1f} | "
        f"{run[key]['max_ms']:.1f} |"
        for key, name in (("http", "9 HTTP readers (images received)"), ("browser", "1 Chromium page (images decoded)"))
    )
    worst_median = max(run["http"]["median_ms"], run["browser"]["median_ms"])
    worst_p95 = max(run["http"]["p95_ms"], run["browser"]["p95_ms"])
    text = f"""# Reading station under load

`{command}` ({results["machine"]}, {results["date"]}). Regenerate with `make bench-reading-station`.

{run["readers"]} readers at once on one station process (`fastmrrecon reading-station`), all on this machine's 2
cores (the simulated readers' own CPU and the browser's included): a study of 6 cases x 3 versions of
{SHAPE[2]} x {SHAPE[1]} x {SHAPE[0]} voxels (noisy images, the costliest PNG slices); each reader changes slice
{run["rate_per_s"]:g} times a second for {run["seconds"]:g} s and gives a score every {run["score_every_s"]:g} s.
How the readers are simulated: `benchmarks/bench_reading_station.py` (module docstring). Load average before /
after: {run["load_average_before"][0]:.2f} / {run["load_average_after"][0]:.2f}.

## Slice change to updated image (ms)

| readers | slice changes | median | 95th percentile | max |
|---|---|---|---|---|
{rows}

Targets: median <= {TARGET_MEDIAN:g} ms ({verdict(worst_median, TARGET_MEDIAN)}: worst {worst_median:.1f} ms),
95th percentile <= {TARGET_P95:g} ms ({verdict(worst_p95, TARGET_P95)}: worst {worst_p95:.1f} ms).

## Scores under concurrent readers and a killed server

The station was killed (SIGKILL) while the readers went on scoring. Scores acknowledged by the station (HTTP
200): {run["scores_acknowledged"]}; of these missing from, or different in, the study file: **{run["scores_lost"]}**
(target 0). SQLite `PRAGMA integrity_check` after the kill: `{run["integrity"]}`. Image requests that failed
before the kill: {run["image_failures_before_kill"]}.

## Screenshots

The reader's view (blinded A / B / C, one slice, window and zoom for all, a Likert score under each image) and the
organizer's view (progress, the unblinded summary as in the Slicer module's *Finish*), on the demo's study
(`fastmrrecon sample-data` + `fastmrrecon demo`):

![reader view](../images/reading_station_reader.png)

![organizer view](../images/reading_station_organizer.png)

Side channel, by design: the PNG of a noisier version is larger. A reader with the browser's developer tools
sees the sizes; the same information is in the image itself. No name, path or case id reaches a reader's
browser (`Testing/test_reading_station_browser.py` searches everything it receives).
"""
    (OUT / "reading_station.md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=4.0, help="slice changes per second per reader (default 4)")
    parser.add_argument("--score-every", type=float, default=2.0, help="seconds between scores (default 2)")
    parser.add_argument("--seconds", type=float, default=40.0, help="duration of the load (default 40)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "reading-station")
    args = parser.parse_args()
    command = "make bench-reading-station"
    args.work_dir.mkdir(parents=True, exist_ok=True)
    screenshots(args.work_dir)
    with tempfile.TemporaryDirectory() as folder:
        load = load_run(Path(folder) / "study", args.rate, args.score_every, args.seconds)
    print(json.dumps(load, indent=1), flush=True)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "load": load,
    }
    (OUT / "reading_station").mkdir(parents=True, exist_ok=True)
    (OUT / "reading_station" / "results.json").write_text(json.dumps(results, indent=1))
    render(results, command)


if __name__ == "__main__":
    main()
