"""The reading station in a real browser (Playwright driving Debian's Chromium): two readers scoring at once in
two browser contexts, a server killed mid-study and restarted, blinding of everything a reader's browser
receives, the organizer's page against the database, a wrong link, and the reader's display controls.

Chromium comes from the system (``apt-get install chromium``; ``$CHROMIUM`` names another binary); ``.ci/run``
installs it and sets ``FASTMRI_REQUIRE_BROWSER=1``, which turns a missing browser into a failure instead of a
skip."""

from __future__ import annotations

import os
import re
import signal
import sqlite3

import pytest
from station_study import CASES, METHODS, chromium_path, free_port, make_station_study, start_station
from test_reading_station import db_rows

from FastMRReconLib.study.reader_study import ReaderStudy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        reason = "no Chromium with Playwright (apt-get install chromium; pip install playwright): .ci/run installs both"
        if os.environ.get("FASTMRI_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture()
def served(tmp_path):
    """A station subprocess on a three-case study with readers "Dr One" and "Dr Two": (process, links, study,
    port); the test may kill and restart it."""
    study = make_station_study(tmp_path / "study")
    port = free_port()
    process, links = start_station(study, port, "--reader", "Dr One", "--reader", "Dr Two")
    state = {"process": process}
    yield state, links, study, port
    state["process"].kill()
    state["process"].wait(timeout=30)


class Reader:
    """One reader's page in its own browser context, recording everything the browser receives."""

    def __init__(self, browser, link: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 860})
        self.page = self.context.new_page()
        self.received: list[str] = []
        self.errors: list[str] = []
        self.page.on("response", self._record)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(link)
        self.wait_for_images()

    def _record(self, response) -> None:
        self.received.append(response.url)
        try:
            body = response.body()
        except Exception:  # a redirect or an aborted prefetch has no body
            return
        self.received.append(body.decode("latin-1"))

    def wait_for_images(self) -> None:
        self.page.wait_for_function(
            "() => document.querySelectorAll('.viewport img').length > 0 && "
            "[...document.querySelectorAll('.viewport img')].every((img) => img.complete && img.naturalWidth > 0)"
        )

    def wait_for_progress(self, start: str) -> None:
        self.page.wait_for_function(
            "(start) => document.getElementById('progress').textContent.startsWith(start)", arg=start
        )

    def score(self, label: str, value: int) -> None:
        self.page.check(f"input[name=score-{label}][value='{value}']")
        self.page.wait_for_selector(f"#saved-{label}:text-is('saved')")

    def progress(self) -> str:
        return self.page.text_content("#progress") or ""

    def seen_text(self) -> str:
        return "\n".join(self.received) + self.page.content()


def assert_blind(text: str) -> None:
    for secret in (*METHODS, *CASES, "nrrd", "sqlite", "station.json"):
        assert not re.search(re.escape(secret), text, re.IGNORECASE), secret


def test_two_readers_score_at_once(browser, served):
    state, links, study, _ = served
    one, two = Reader(browser, links["reader 'Dr One'"]), Reader(browser, links["reader 'Dr Two'"])
    given = {}
    for k in range(3):
        for index, label in enumerate("ABC"):  # interleaved: each score of one reader between two of the other
            for reader, name in ((one, "Dr One"), (two, "Dr Two")):
                value = 1 + (k + index + len(name)) % 5
                reader.score(label, value)
                given[(name, k, label)] = value
        for reader in (one, two):
            assert reader.page.is_enabled("#next")
            reader.page.click("#next")
            if k < 2:
                reader.wait_for_progress(f"Case {k + 2}")
                reader.wait_for_images()
    for reader in (one, two):
        reader.page.wait_for_selector("#done:not([hidden])")
        assert reader.errors == []
        assert_blind(reader.seen_text())
    with ReaderStudy.open(study) as opened:
        expected = sorted(
            (name, case_id, opened.blinded(case_id, name)[label], label, value)
            for (name, k, label), value in given.items()
            for case_id in [opened.case_order(name)[k]]
        )
    assert db_rows(study) == expected


def test_killed_server_loses_nothing_and_the_reader_resumes(browser, served):
    state, links, study, port = served
    reader = Reader(browser, links["reader 'Dr One'"])
    for label in "ABC":
        reader.score(label, 4)
    reader.page.click("#next")
    reader.wait_for_progress("Case 2")
    reader.wait_for_images()
    reader.score("A", 2)
    reader.score("B", 5)
    state["process"].send_signal(signal.SIGKILL)
    state["process"].wait(timeout=30)
    reader.page.click("input[name=score-C][value='3']")  # given while the server is down: not saved, and says so
    reader.page.wait_for_selector("#saved-C:text-is('not saved')")
    assert "Not saved" in (reader.page.text_content("#message") or "")
    with sqlite3.connect(study) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert len(db_rows(study)) == 5
    state["process"], again = start_station(study, port)
    assert again["reader 'Dr One'"] == links["reader 'Dr One'"]
    reader.page.reload()
    reader.wait_for_images()
    assert reader.progress().startswith("Case 2 of 3; 1 finished")
    assert reader.page.is_checked("input[name=score-A][value='2']")
    assert reader.page.is_checked("input[name=score-B][value='5']")
    assert not reader.page.is_checked("input[name=score-C][value='3']")
    assert not reader.page.is_enabled("#next")


def test_organizer_page_shows_the_database_summary(browser, served, tmp_path):
    _, links, study, _ = served
    reader = Reader(browser, links["reader 'Dr One'"])
    for label, value in zip("ABC", (5, 3, 1)):
        reader.score(label, value)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.goto(links["organizer (unblinded: keep it private)"])
    page.wait_for_selector("#summary tbody tr")
    page.wait_for_function("() => document.getElementById('chart').naturalWidth > 0")
    rows = [
        [cell.strip() for cell in row.split("\t")]
        for row in page.eval_on_selector_all(
            "#summary tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent).join('\\t'))"
        )
    ]
    with ReaderStudy.open(study) as opened:
        expected = [
            ["all readers" if s.reader == "all" else s.reader, s.method, str(s.count), f"{s.mean:.2f}", f"{s.sd:.2f}"]
            for s in opened.summary()
        ]
    assert rows == expected
    progress = page.eval_on_selector_all(
        "#readers tbody tr", "rows => rows.map(r => r.cells[0].textContent + '|' + r.cells[2].textContent)"
    )
    assert progress == ["Dr One|3", "Dr Two|0"]
    with page.expect_download() as download:
        page.click("#csv")
    saved = tmp_path / "summary.csv"
    download.value.save_as(saved)
    assert saved.read_text().splitlines()[0] == "reader,method,count,mean,sd"
    assert page.screenshot(path=str(tmp_path / "organizer.png"))


def test_a_wrong_link_shows_nothing_but_a_notice(browser, served):
    _, links, study, _ = served
    context = browser.new_context()
    page = context.new_page()
    forged = re.sub(r"/r/[^/]+/", "/r/" + "A" * 32 + "/", links["reader 'Dr One'"])
    response = page.goto(forged)
    assert response.status == 404
    assert "This link is not valid" in page.text_content("body")
    assert page.query_selector("img") is None
    assert db_rows(study) == []


def test_reader_controls_scroll_zoom_and_window_all_images(browser, served):
    _, links, _, _ = served
    reader = Reader(browser, links["reader 'Dr Two'"])
    page = reader.page
    sources = lambda: page.eval_on_selector_all(".viewport img", "imgs => imgs.map(i => i.getAttribute('src'))")  # noqa: E731
    before = sources()
    assert len(before) == 3 and len({re.sub(r"/[A-C]/", "/", s) for s in before}) == 1  # one slice, one window
    page.hover("#image-B")
    page.mouse.wheel(0, 120)
    page.wait_for_function("() => window.__latencies.length >= 2")
    after = sources()
    slice_of = lambda source: int(re.search(r"/(\d+)\.png", source)[1])  # noqa: E731
    assert [slice_of(s) for s in after] == [slice_of(s) + 1 for s in before]
    assert "slice 4 / 5" in page.text_content("#slice-text")
    page.keyboard.press("ArrowDown")
    page.wait_for_function("() => document.getElementById('slice-text').textContent.includes('slice 3 / 5')")
    transforms = lambda: page.eval_on_selector_all(".viewport img", "imgs => imgs.map(i => i.style.transform)")  # noqa: E731
    zoom_before = transforms()
    page.click("#zoom-in")
    zoomed = transforms()
    assert zoomed != zoom_before and len(set(zoomed)) == 1  # the same zoom in every view
    step = page.evaluate("() => (view.state.window[1] - view.state.window[0]) / 1000")

    def windows() -> list[tuple[float, float]]:
        return [
            tuple(float(re.search(rf"{end}=([-0-9.e+]+)", source)[1]) for end in ("lo", "hi")) for source in sources()
        ]

    for low, high in ((150, 300), (200, 200.1)):  # the second is narrower than the URL's step
        page.fill("#low", str(low))
        page.press("#low", "Enter")
        page.fill("#high", str(high))
        page.press("#high", "Enter")
        page.wait_for_function(f"() => view.low === {low} && view.high === {high}")
        reader.wait_for_images()
        shown = windows()
        assert len(set(shown)) == 1  # one window for all three
        assert abs(shown[0][0] - low) <= step and abs(shown[0][1] - high) <= step and shown[0][1] > shown[0][0]
    assert page.text_content("#message") == ""
    texts = page.eval_on_selector_all("fieldset", "boxes => boxes.map(b => b.textContent)")
    assert len(texts) == 3 and all("1: very poor: non-diagnostic" in text and "5: excellent" in text for text in texts)
    assert reader.errors == []
