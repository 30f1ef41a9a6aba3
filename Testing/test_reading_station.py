"""The reading station over HTTP (FastMRReconLib.station): tokens, blinding, the images a reader gets, scoring,
the organizer's summary, concurrent readers, a killed server, and bad input. The same station in a real browser:
test_reading_station_browser.py."""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from station_study import CASES, METHODS, free_port, make_station_study, start_station, version_array

from FastMRICommon.geometry import VolumeGeometry
from FastMRReconLib.station.keys import StationKeys, sidecar_path
from FastMRReconLib.station.server import NOT_FOUND_PAGE, Station, StationServer, is_loopback
from FastMRReconLib.station.slices import axial_view
from FastMRReconLib.study.reader_study import ReaderStudy

ORGANIZER = "organizer (unblinded: keep it private)"
JOIN = "join (a reader enters a name)"


def request(url: str, body: object | None = None) -> tuple[int, bytes, dict]:
    """(status, body, headers) of a GET (or a POST of ``body`` as JSON)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    message = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(message, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def get_json(url: str) -> dict:
    status, body, _ = request(url)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture()
def station(tmp_path):
    """A running station (port chosen by the system) on a three-case study, with readers "Dr One" and "Dr Two"."""
    study = make_station_study(tmp_path / "study")
    served = Station(study)
    for name in ("Dr One", "Dr Two"):
        served.keys.add_reader(name)
    server = StationServer(served, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def reader_link(server: StationServer, name: str) -> str:
    return server.links()[f"reader {name!r}"]


def db_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return sorted(connection.execute("SELECT reader, case_id, method, label, score FROM scores"))


def test_state_is_blinded_and_resumes(station):
    link = reader_link(station, "Dr One")
    state = get_json(link + "api/state")
    assert (state["k"], state["n"], state["finished"], state["labels"]) == (0, 3, 0, ["A", "B", "C"])
    assert state["slices"] == 5 and state["positions"] == [0.0, 2.0, 4.0, 6.0, 8.0]
    text = json.dumps(state)
    for secret in (*METHODS, *CASES, "nrrd", "sqlite"):
        assert secret not in text
    for label in "ABC":
        assert request(link + "api/score", {"k": 0, "label": label, "score": 3})[0] == 200
    resumed = get_json(link + "api/state")
    assert (resumed["k"], resumed["finished"], resumed["scores"]) == (1, 1, {})
    assert get_json(link + "api/state?k=0")["scores"] == {"A": 3, "B": 3, "C": 3}
    status, body, _ = request(link + "api/state?k=2")  # cannot skip ahead of an unfinished case
    assert status == 400 and "earlier cases" in json.loads(body)["error"]


def test_images_follow_the_blinding(station):
    """Each label's PNG is that reader's blinded method's slice, windowed (compared with the array written to
    the file: the study's LPS grid shows as stored); the two readers' orders differ."""
    from PIL import Image

    study_path = station.station.study_path
    with ReaderStudy.open(study_path) as study:
        seen_orders = set()
        for reader in ("Dr One", "Dr Two"):
            link = reader_link(station, reader)
            order = study.case_order(reader)
            for k, case_id in enumerate(order):
                shown = study.blinded(case_id, reader)
                seen_orders.add(tuple(shown.values()))
                for label, method in shown.items():
                    status, body, headers = request(f"{link}img/{k}/{label}/3.png?lo=100&hi=500")
                    assert status == 200 and headers["Content-Type"] == "image/png"
                    pixels = np.asarray(Image.open(io.BytesIO(body)))
                    written = version_array(CASES.index(case_id), METHODS.index(method))[3]
                    expected = np.clip((written - 100) * 255 / 400, 0, 255).astype(np.uint8)
                    assert pixels.shape == expected.shape and np.abs(pixels.astype(int) - expected).max() <= 1
    assert len(seen_orders) > 1  # the blinding varies between readers and cases


def test_scores_are_recorded_unblinded_in_the_study(station):
    link = reader_link(station, "Dr Two")
    with ReaderStudy.open(station.station.study_path) as study:
        case_id = study.case_order("Dr Two")[0]
        shown = study.blinded(case_id, "Dr Two")
    reply = json.loads(request(link + "api/score", {"k": 0, "label": "B", "score": 5})[1])
    assert reply == {"saved": True, "scores": {"B": 5}, "finished": 0}
    request(link + "api/score", {"k": 0, "label": "B", "score": 2})  # a new score of the same image replaces it
    assert db_rows(station.station.study_path) == [("Dr Two", case_id, shown["B"], "B", 2)]


@pytest.mark.parametrize(
    "body",
    [
        {"k": 0, "label": "A", "score": 0},
        {"k": 0, "label": "A", "score": 6},
        {"k": 0, "label": "A", "score": "4"},
        {"k": 0, "label": "A", "score": True},
        {"k": 0, "label": "A", "score": 3.5},
        {"k": 0, "label": "D", "score": 3},
        {"k": 3, "label": "A", "score": 3},
        {"k": -1, "label": "A", "score": 3},
        {"k": "0", "label": "A", "score": 3},
        {"label": "A", "score": 3},
        [0, "A", 3],
        b"not json",
        b"",
    ],
)
def test_bad_scores_are_refused_and_change_nothing(station, body):
    status, reply, _ = request(reader_link(station, "Dr One") + "api/score", body)
    assert status == 400 and json.loads(reply)["error"]
    assert db_rows(station.station.study_path) == []


def test_wrong_tokens_get_nothing(station):
    links = station.links()
    reader, organizer, join = reader_link(station, "Dr One"), links[ORGANIZER], links[JOIN]
    base = station.base_url
    forged = re.sub(r"/r/[^/]+/", "/r/" + "x" * 32 + "/", reader)
    wrong = [
        forged,
        forged + "api/state",
        forged + "img/0/A/0.png",
        forged + "reader.js",
        reader.replace("/r/", "/o/"),  # a reader's token on the organizer's routes
        reader.replace("/r/", "/o/") + "api/summary",
        reader.replace("/r/", "/o/") + "summary.csv",
        organizer.replace("/o/", "/r/") + "api/state",  # the organizer's token is not a reader's
        join.replace("/j/", "/r/") + "api/state",
        join.replace("/j/", "/o/") + "api/summary",
        base + "/",
        base + "/reader.js",
        base + "/station.css",
        reader + "../../etc/passwd",
        reader + "pages/reader.html",
    ]
    for url in wrong:  # one page for every refusal: a guessed link learns nothing
        assert request(url)[:2] == (404, NOT_FOUND_PAGE), url
    for url in (reader + "img/0/A/99.png", reader + "img/0/Z/0.png", reader + "img/7/A/0.png"):
        assert request(url)[0] in (400, 404) and b"PNG" not in request(url)[1]
    assert request(forged + "api/score", {"k": 0, "label": "A", "score": 3})[0] == 404
    assert db_rows(station.station.study_path) == []


def raw_exchange(server: StationServer, data: bytes) -> bytes:
    """What the station answers to the raw bytes ``data`` on one connection (until it closes it or goes quiet)."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as connection:
        connection.sendall(data)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except TimeoutError:
            pass
    return received


def test_a_request_hidden_in_a_refused_body_is_never_answered(station):
    """A body the station refuses (too large, unknown route) is never read as a further request."""
    path = urllib.parse.urlsplit(reader_link(station, "Dr One")).path
    smuggled = f"GET {path}api/state HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    for route, padding in (("api/score", 4100), ("nothing-here", 10)):
        body = b" " * padding + smuggled
        head = f"POST {path}{route} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        answer = raw_exchange(station, head + body)
        assert answer.count(b"HTTP/1.1 ") == 1 and b'"labels"' not in answer


@pytest.mark.parametrize("length", ["abc", "-1", "99999999999", ""])
def test_malformed_lengths_get_an_answer_and_a_closed_connection(station, length):
    path = urllib.parse.urlsplit(reader_link(station, "Dr One")).path
    for prefix in (path, "/r/" + "x" * 32 + "/"):  # a valid and a refused token
        header = f"Content-Length: {length}\r\n" if length else ""
        answer = raw_exchange(station, f"POST {prefix}api/score HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 404")) and answer.count(b"HTTP/1.1 ") == 1
    assert db_rows(station.station.study_path) == []


@pytest.mark.parametrize("k", ["%C2%B2", "1" * 5000, "-1", "1.0", "9999999"])
def test_odd_case_numbers_are_refused(station, k):
    status, body, _ = request(reader_link(station, "Dr One") + f"api/state?k={k}")
    assert status == 400 and json.loads(body)["error"]


@pytest.mark.parametrize("window", ["lo=nan&hi=1", "lo=0&hi=inf", "lo=5&hi=5", "lo=-1e308&hi=1e308", "lo=a&hi=b"])
def test_odd_windows_are_refused(station, window):
    status, body, _ = request(reader_link(station, "Dr One") + f"img/0/A/0.png?{window}")
    assert status == 400 and json.loads(body)["error"]


def test_head_requests_send_headers_only(station):
    message = urllib.request.Request(reader_link(station, "Dr One") + "api/state", method="HEAD")
    with urllib.request.urlopen(message, timeout=30) as response:
        assert response.status == 200 and response.read() == b"" and int(response.headers["Content-Length"]) > 0


def test_a_reader_cannot_score_ahead_of_an_unfinished_case(station):
    status, body, _ = request(reader_link(station, "Dr One") + "api/score", {"k": 2, "label": "A", "score": 3})
    assert status == 400 and "earlier cases" in json.loads(body)["error"]
    assert db_rows(station.station.study_path) == []


def test_a_case_with_nan_voxels_opens_with_a_finite_window(tmp_path):
    from FastMRICommon.volume_files import read_volume_array, write_volume_array

    study = make_station_study(tmp_path / "s")
    with ReaderStudy.open(study) as opened:
        case_id = opened.case_order("Dr One")[0]
        path = opened.volume_path(case_id, METHODS[1])
    array, geometry = read_volume_array(path)
    array[2, 5:9, 5:9] = np.nan
    write_volume_array(array, geometry, path)
    served = Station(study)
    served.keys.add_reader("Dr One")
    server = StationServer(served, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        state = get_json(reader_link(server, "Dr One") + "api/state")
        assert all(np.isfinite(state["window"])) and state["window"][1] > state["window"][0]
        for label in "ABC":
            assert request(reader_link(server, "Dr One") + f"img/0/{label}/2.png")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_loopback_hosts_are_told_apart_from_others():
    assert all(is_loopback(host) for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"))


def test_security_headers_and_no_caching_of_state(station):
    _, _, headers = request(reader_link(station, "Dr One") + "api/state")
    assert headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"


def test_organizer_summary_equals_the_database(station):
    rng = np.random.default_rng(0)
    for reader in ("Dr One", "Dr Two"):
        link = reader_link(station, reader)
        for k in range(2):
            for label in "ABC":
                request(link + "api/score", {"k": k, "label": label, "score": int(rng.integers(1, 6))})
    organizer = station.links()[ORGANIZER]
    data = get_json(organizer + "api/summary")
    with sqlite3.connect(station.station.study_path) as connection:
        rows = list(connection.execute("SELECT reader, method, score FROM scores"))
    for entry in data["summary"]:
        values = [s for r, m, s in rows if m == entry["method"] and entry["reader"] in ("all", r)]
        assert entry["count"] == len(values)
        assert entry["mean"] == pytest.approx(np.mean(values))
        assert entry["sd"] == pytest.approx(np.std(values, ddof=1))
    assert {entry["reader"] for entry in data["summary"]} == {"all", "Dr One", "Dr Two"}
    assert [(r["reader"], r["finished"], r["scored"]) for r in data["readers"]] == [("Dr One", 2, 6), ("Dr Two", 2, 6)]
    csv_status, csv_body, _ = request(organizer + "summary.csv")
    assert csv_status == 200
    lines = csv_body.decode().strip().splitlines()
    assert lines[0] == "reader,method,count,mean,sd" and len(lines) == 1 + len(data["summary"])
    png_status, png, _ = request(organizer + "summary.png")
    assert png_status == 200 and png.startswith(b"\x89PNG")


def test_organizer_before_any_score(station):
    data = get_json(station.links()[ORGANIZER] + "api/summary")
    assert data["summary"] == [] and [r["scored"] for r in data["readers"]] == [0, 0]
    assert request(station.links()[ORGANIZER] + "summary.csv")[0] == 404


def test_join_gives_a_personal_link_and_refuses_bad_names(station):
    join = station.links()[JOIN]
    for name, problem in (("", "enter a reader name"), ("   ", "enter a reader name"), ("x" * 65, "at most 64")):
        status, body, _ = request(join + "api/join", {"name": name})
        assert status == 400 and problem in json.loads(body)["error"]
    status, body, _ = request(join + "api/join", {"name": "Dr One"})  # taken: nobody scores as someone else
    assert status == 400 and "taken" in json.loads(body)["error"]
    with ReaderStudy.open(station.station.study_path) as study:  # scored in the Slicer module, no link yet
        study.record("Dr Slicer", study.cases[0].case_id, "A", 3)
    status, body, _ = request(join + "api/join", {"name": "Dr Slicer"})
    assert status == 400 and "taken" in json.loads(body)["error"]
    status, body, _ = request(join + "api/join", {"name": "  Dr Three "})
    link = station.base_url + json.loads(body)["link"]
    assert status == 200 and get_json(link + "api/state")["reader"] == "Dr Three"
    keys = json.loads(sidecar_path(station.station.study_path).read_text())
    assert "Dr Three" in keys["readers"]


def test_concurrent_readers_lose_no_score(station):
    """Ten readers, each joined with their own name, score the whole study at the same time."""
    join = station.links()[JOIN]
    replies = [request(join + "api/join", {"name": f"reader {i}"})[1] for i in range(10)]
    links = [station.base_url + json.loads(reply)["link"] for reply in replies]
    errors: list[str] = []

    def read(link: str) -> None:
        for k in range(3):
            for label in "ABC":
                score = {"k": k, "label": label, "score": 1 + (k + ord(label)) % 5}
                status, body, _ = request(link + "api/score", score)
                if status != 200:
                    errors.append(body.decode())

    threads = [threading.Thread(target=read, args=(link,)) for link in links]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = db_rows(station.station.study_path)
    assert len(rows) == 10 * 3 * 3 and {row[0] for row in rows} == {f"reader {i}" for i in range(10)}


def test_links_survive_a_restart_and_another_studys_keys_are_refused(tmp_path):
    study = make_station_study(tmp_path / "one")
    first = Station(study)
    token = first.keys.add_reader("Dr One")
    second = Station(study)
    assert second.keys.reader_for(token) == "Dr One" and second.keys.organizer == first.keys.organizer
    assert oct(sidecar_path(study).stat().st_mode & 0o777) == "0o600"
    other = make_station_study(tmp_path / "two")
    sidecar_path(other).write_bytes(sidecar_path(study).read_bytes())
    with pytest.raises(Exception, match="another study"):
        Station(other)
    sidecar_path(other).write_text("{not json")
    with pytest.raises(Exception, match="not a reading-station key file"):
        StationKeys.load_or_create(other, "x")


def test_axial_view_matches_slicers_red_view():
    """An LPS-aligned volume (NRRD's usual grid) shows as stored; the same anatomy stored RAS-aligned and with
    its slices reversed shows the same picture."""
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    lps = VolumeGeometry(directions=((-1.0, 0, 0), (0, -1.0, 0), (0, 0, 1.0)))
    shown = axial_view(array, lps)
    assert np.array_equal(shown.array, array) and shown.positions == (0.0, 1.0)
    flipped = VolumeGeometry(origin=(3.0, 2.0, 1.0), directions=((1.0, 0, 0), (0, 1.0, 0), (0, 0, -1.0)))
    again = axial_view(array[::-1, ::-1, ::-1].copy(), flipped)
    assert np.array_equal(again.array, array) and again.positions == (0.0, 1.0)
    # columns of the direction matrix: i runs inferior, j posterior, k to the patient's right
    sagittal_stack = VolumeGeometry(directions=((0, 0, 1.0), (0, -1.0, 0), (-1.0, 0, 0)))
    turned = axial_view(array, sagittal_stack)  # slices: i reversed; columns (right to left): k reversed
    assert turned.array.shape == (4, 3, 2) and np.array_equal(turned.array[:, :, 0], array[-1][:, ::-1].T)


def test_a_case_with_versions_on_different_grids_is_refused_without_naming_files(tmp_path):
    study = make_station_study(tmp_path / "s")
    from FastMRICommon.volume_files import write_volume_array

    with ReaderStudy.open(study) as opened:
        case_id = opened.case_order("Dr One")[0]
        write_volume_array(np.zeros((4, 40, 48), np.float32), VolumeGeometry(), opened.volume_path(case_id, METHODS[0]))
    served = Station(study)
    served.keys.add_reader("Dr One")
    server = StationServer(served, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status, body, _ = request(reader_link(server, "Dr One") + "api/state")
        assert status == 500 and "cannot be read" in json.loads(body)["error"]
        assert not any(secret in body.decode() for secret in (*METHODS, "nrrd"))
    finally:
        server.shutdown()
        server.server_close()


# -- the command line ------------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "FastMRReconLib.cli", "reading-station", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_cli_killed_mid_study_loses_nothing_and_resumes(tmp_path):
    study = make_station_study(tmp_path / "study")
    port = free_port()
    process, links = start_station(study, port, "--reader", "Dr One")
    try:
        link = links["reader 'Dr One'"]
        acknowledged = 0
        for k, labels in ((0, "ABC"), (1, "AB")):
            for label in labels:
                assert request(link + "api/score", {"k": k, "label": label, "score": 4})[0] == 200
                acknowledged += 1
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    with sqlite3.connect(study) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert len(db_rows(study)) == acknowledged
    restarted, again = start_station(study, port)
    try:
        assert again["reader 'Dr One'"] == link  # the same personal link after a restart
        state = get_json(link + "api/state")
        assert (state["k"], state["finished"], state["scores"]) == (1, 1, {"A": 4, "B": 4})
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=30) == 0


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    not_a_study = tmp_path / "notes.sqlite"
    not_a_study.write_text("hello")
    result = run_cli(str(not_a_study), "--port", "0")
    assert result.returncode == 2 and "not a FastMRRecon reader-study file" in result.stderr
    assert not_a_study.read_text() == "hello"
    assert run_cli(str(tmp_path / "missing.sqlite")).returncode == 2
    study = make_station_study(tmp_path / "study")
    before = study.read_bytes()
    moved = next((tmp_path / "study").glob("*.nrrd"))
    moved.rename(tmp_path / moved.name)
    result = run_cli(str(study), "--port", "0")
    assert result.returncode == 2 and "missing or moved" in result.stderr
    assert study.read_bytes() == before
    (tmp_path / moved.name).rename(moved)
    result = run_cli(str(study), "--port", "70000")
    assert result.returncode == 2 and "0 to 65535" in result.stderr
    result = run_cli(str(study), "--reader", "x" * 65, "--port", "0")
    assert result.returncode == 2 and "at most 64" in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_cli(str(study), "--port", str(busy.getsockname()[1]))
    assert result.returncode == 2 and "choose another --port" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert study.read_bytes() == before


def test_cli_warns_when_reachable_from_other_machines(tmp_path):
    study = make_station_study(tmp_path / "study")
    process = subprocess.Popen(
        [sys.executable, "-m", "FastMRReconLib.cli", "reading-station", str(study), "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert "reachable from other machines" in process.stderr.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
