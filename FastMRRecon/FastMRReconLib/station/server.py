"""The reading station's HTTP server (``fastmrrecon reading-station``): serves one reader study to browsers.

Routes (``<t>`` is a token of ``keys.StationKeys``; any other path, or a token of the wrong kind, gets the same
404 page, so a guessed link learns nothing; no file is ever served by a path the client names):

- ``/r/<t>/`` a reader's page; ``/r/<t>/api/state?k=`` the reader's case ``k`` (default: where they stopped):
  the labels, slice count and positions, the common window, their scores so far, progress; never a case id, a
  method or a file name. ``/r/<t>/img/<k>/<label>/<slice>.png?lo=&hi=`` one slice of one version, windowed;
  ``POST /r/<t>/api/score`` ``{"k", "label", "score"}``: recorded (and committed) before the reply.
- ``/j/<t>/`` the join page; ``POST /j/<t>/api/join`` ``{"name"}`` gives the reader a personal link.
- ``/o/<t>/`` the organizer's page; ``/o/<t>/api/summary`` per-reader progress and the unblinded summary
  (``ReaderStudy.summary``, as the Slicer module's *Finish*); ``summary.csv`` (``write_summary_csv``) and
  ``summary.png`` (``plot_summary``).

Blinding: the server alone maps a reader's label to a method (``ReaderStudy.blinded``). Scores are written
one at a time under a lock, each its own committed SQLite transaction (``ReaderStudy.record``), so two readers
scoring at once or a killed server lose nothing that a browser was told was saved.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import re
import socket
import sys
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from FastMRICommon.errors import InputError
from FastMRReconLib.station.keys import StationKeys
from FastMRReconLib.station.slices import CaseCache, DisplayCase, slice_png
from FastMRReconLib.study.reader_study import LIKERT, ReaderStudy, plot_summary, write_summary_csv

log = logging.getLogger("fastmrrecon")

PAGES = Path(__file__).resolve().parent / "pages"
#: The files a page may load, by name, and their content types (served only under a valid token).
ASSETS = {
    "reader.js": "text/javascript",
    "organizer.js": "text/javascript",
    "join.js": "text/javascript",
    "station.css": "text/css",
}
#: The page each kind of link opens.
PAGE_OF = {"r": "reader.html", "j": "join.html", "o": "organizer.html"}
#: Largest request body accepted (bytes): a score or a name.
MAX_BODY = 4096
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
NOT_FOUND_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>Reading station</title>"
    b"<p>This link is not valid (unknown or expired). Ask the study organizer for your link.</p>"
)
_ROUTE = re.compile(r"^/(?P<kind>[rjo])/(?P<token>[A-Za-z0-9_-]{16,64})/(?P<rest>.*)$")
_IMAGE = re.compile(r"^img/(?P<k>\d{1,6})/(?P<label>[A-Z])/(?P<slice>\d{1,6})\.png$")


class RequestError(Exception):
    """A request the station refuses: HTTP ``status`` and a one-line message for the page."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Station:
    """The served study: its design (read once: cases, methods, seed, from which the blinding is computed),
    its keys, and the decoded images shared by all readers. Thread-safe."""

    def __init__(self, study_path: str | Path, keys: StationKeys | None = None) -> None:
        self.study_path = Path(study_path).resolve()
        with ReaderStudy.open(self.study_path) as study:
            self.design = study  # closed below: only its in-memory design (cases, methods, seed) is used
        self.study_id = self.design.study_id
        self.keys = keys or StationKeys.load_or_create(self.study_path, self.study_id)
        missing = [
            self.design.volume_path(case.case_id, method)
            for case in self.design.cases
            for method in self.design.methods
            if not self.design.volume_path(case.case_id, method).is_file()
        ]
        if missing:
            raise InputError(
                f"{len(missing)} volume file(s) of the study are missing or moved, e.g. {missing[0]}; "
                "put them back where the study file expects them"
            )
        self.cache = CaseCache()
        self._write_lock = threading.Lock()
        self._plot_lock = threading.Lock()

    def open_study(self) -> ReaderStudy:
        """The study file, opened for one request (refused if it was replaced by another study)."""
        return ReaderStudy.open(self.study_path, expected_study_id=self.study_id)

    # -- reader ---------------------------------------------------------------------------------------------
    def case_at(self, reader: str, k: object) -> str:
        """The id of the ``k``-th case (0-based) in ``reader``'s order, after checking ``k``."""
        order = self.design.case_order(reader)
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(order):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"there is no case {k!r}; cases are 0 to {len(order) - 1}")
        return order[k]

    def display_case(self, case_id: str) -> DisplayCase:
        files = {method: self.design.volume_path(case_id, method) for method in self.design.methods}
        try:
            return self.cache.get(case_id, files)
        except InputError as error:  # the detail names files (which may name methods): the console only
            log.error("case %r cannot be shown: %s", case_id, error)
            raise RequestError(
                HTTPStatus.INTERNAL_SERVER_ERROR, "this case's images cannot be read; the organizer's console says why"
            ) from None

    def first_open(self, study: ReaderStudy, reader: str) -> int:
        """Where ``reader``'s first unfinished case is in their order (the number of cases when all are done)."""
        next_case = study.next_case(reader)
        order = self.design.case_order(reader)
        return order.index(next_case) if next_case is not None else len(order)

    def reader_state(self, reader: str, k: int | None) -> dict:
        """What the reader's page shows for their case ``k`` (None: the first they have not finished)."""
        order = self.design.case_order(reader)
        with self.open_study() as study:
            first_open = self.first_open(study, reader)
            if k is None:
                k = min(first_open, len(order) - 1)
            case_id = self.case_at(reader, k)
            if k > first_open:
                raise RequestError(HTTPStatus.BAD_REQUEST, "finish the earlier cases first")
            scores = study.reader_scores(reader, case_id)
            finished = len(order) - study.remaining(reader)
        case = self.display_case(case_id)
        first = next(iter(case.volumes.values()))
        return {
            "reader": reader,
            "k": k,
            "n": len(order),
            "finished": finished,
            "first_open": first_open,
            "labels": list(self.design.labels()),
            "slices": case.slices,
            "positions": [round(position, 2) for position in first.positions],
            "pixel_mm": list(first.pixel_mm),
            "window": list(case.window),
            "scores": scores,
            "likert": [[score, LIKERT[score]] for score in sorted(LIKERT, reverse=True)],
        }

    def slice_image(self, reader: str, k: int, label: str, index: int, low: float | None, high: float | None) -> bytes:
        case_id = self.case_at(reader, k)
        shown = self.design.blinded(case_id, reader)
        if label not in shown:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no image {label}")
        case = self.display_case(case_id)
        if not 0 <= index < case.slices:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no slice {index}")
        default_low, default_high = case.window
        low = default_low if low is None else low
        high = default_high if high is None else high
        if not high > low:
            raise RequestError(HTTPStatus.BAD_REQUEST, "the window's high end must be above its low end")
        return slice_png(case.volumes[shown[label]].array[index], low, high)

    def score(self, reader: str, body: dict) -> dict:
        case_id = self.case_at(reader, body.get("k"))
        label, score = body.get("label"), body.get("score")
        if not isinstance(label, str) or isinstance(score, bool) or not isinstance(score, int):
            raise RequestError(HTTPStatus.BAD_REQUEST, "a score needs an image label and a whole number from 1 to 5")
        with self._write_lock, self.open_study() as study:
            if body["k"] > self.first_open(study, reader):
                raise RequestError(HTTPStatus.BAD_REQUEST, "finish the earlier cases first")
            try:
                study.record(reader, case_id, label, score)
            except InputError as error:
                raise RequestError(HTTPStatus.BAD_REQUEST, str(error)) from None
            scores = study.reader_scores(reader, case_id)
            finished = len(self.design.cases) - study.remaining(reader)
        return {"saved": True, "scores": scores, "finished": finished}

    def join(self, name: object) -> str:
        """A personal token for a new reader ``name``; a name that already has a link, or scores in the study
        (given in the Slicer module), is refused: nobody joins as someone else."""
        if not isinstance(name, str):
            raise RequestError(HTTPStatus.BAD_REQUEST, "enter a reader name")
        with self.open_study() as study:
            scored = set(study.readers())
        try:
            if name.strip() in scored and name.strip() not in self.keys.readers:
                raise InputError(f"the name {name.strip()!r} is taken: ask the organizer for your personal link")
            return self.keys.add_reader(name, must_be_new=True)
        except InputError as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, str(error)) from None

    # -- organizer ------------------------------------------------------------------------------------------
    def progress(self) -> dict:
        """Per-reader progress and the unblinded summary (the organizer's view)."""
        with self.open_study() as study:
            activity = study.activity()
            readers = sorted(set(self.keys.readers) | set(activity))
            rows = [
                {
                    "reader": reader,
                    "finished": len(self.design.cases) - study.remaining(reader),
                    "scored": activity.get(reader, (0, ""))[0],
                    "last": activity.get(reader, (0, ""))[1],
                }
                for reader in readers
            ]
            summary = study.summary() if activity else []
        return {
            "study": self.design.name,
            "cases": len(self.design.cases),
            "methods": list(self.design.methods),
            "readers": rows,
            "summary": [row.__dict__ for row in summary],
        }

    def summary_file(self, kind: str) -> bytes:
        """The summary as CSV or PNG (the Lib's writers, into a temporary folder)."""
        with self.open_study() as study:
            try:
                summary = study.summary()
            except InputError as error:
                raise RequestError(HTTPStatus.NOT_FOUND, str(error)) from None
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"summary.{kind}"
            if kind == "csv":
                write_summary_csv(summary, path)
            else:
                with self._plot_lock:  # matplotlib's pyplot is not thread-safe
                    plot_summary(summary, path, title=self.design.name)
            return path.read_bytes()


class StationHandler(BaseHTTPRequestHandler):
    """One request (module docstring for the routes)."""

    protocol_version = "HTTP/1.1"
    #: Seconds a connection may stay silent (an idle keep-alive or a client that stops mid-request).
    timeout = 30
    server: StationServer
    _raw_body: bytes | None = b""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the signature of the base class
        pass  # access logs would print the tokens

    # -- replies --------------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: object, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(data, allow_nan=False).encode(), "application/json")

    def _not_found(self) -> None:
        self._send(HTTPStatus.NOT_FOUND, NOT_FOUND_PAGE, "text/html; charset=utf-8")

    def _read_body(self) -> bytes | None:
        """The request's body, read whole before anything is answered (so that no byte of it can be taken for
        another request on this connection); None, and the connection closed after the reply, when its length
        is missing, malformed or above ``MAX_BODY``."""
        length = self.headers.get("Content-Length", "")
        if not re.fullmatch(r"[0-9]{1,9}", length) or not 0 < int(length) <= MAX_BODY:
            self.close_connection = True
            return None
        return self.rfile.read(int(length))

    def _body(self) -> dict:
        if self._raw_body is None:
            raise RequestError(HTTPStatus.BAD_REQUEST, "the request body is empty or too large")
        try:
            data = json.loads(self._raw_body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the request body is not a JSON object")
        return data

    # -- routing --------------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self._raw_body = self._read_body() if method == "POST" else b""
        url = urlsplit(self.path)
        match = _ROUTE.match(url.path)
        station = self.server.station
        who = None
        if match:
            kind, token = match["kind"], match["token"]
            if kind == "r":
                who = station.keys.reader_for(token)
            elif (kind == "o" and station.keys.is_organizer(token)) or (kind == "j" and station.keys.is_join(token)):
                who = kind
        if match is None or who is None:
            self._not_found()
            return
        try:
            rest = match["rest"]
            if method == "GET" and rest == "":
                self._send(HTTPStatus.OK, (PAGES / PAGE_OF[match["kind"]]).read_bytes(), "text/html; charset=utf-8")
            elif method == "GET" and rest in ASSETS:
                self._send(HTTPStatus.OK, (PAGES / rest).read_bytes(), ASSETS[rest] + "; charset=utf-8")
            elif match["kind"] == "r":
                self._reader(method, rest, parse_qs(url.query), who)
            elif match["kind"] == "o":
                self._organizer(method, rest)
            else:
                self._join(method, rest)
        except RequestError as error:
            self._json({"error": str(error)}, error.status)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # a bug must not take the station down, nor show a traceback to a browser
            log.exception("request failed")
            self._json({"error": "the station failed on this request; the organizer's console says why"}, 500)

    def _reader(self, method: str, rest: str, query: dict, reader: str) -> None:
        station = self.server.station
        if method == "GET" and rest == "api/state":
            k = query.get("k", [None])[0]
            if k is not None and not re.fullmatch(r"[0-9]{1,6}", k):
                raise RequestError(HTTPStatus.BAD_REQUEST, "k must be a case number")
            self._json(station.reader_state(reader, None if k is None else int(k)))
        elif method == "GET" and (image := _IMAGE.match(rest)):
            low, high = (_number(query, name) for name in ("lo", "hi"))
            png = station.slice_image(reader, int(image["k"]), image["label"], int(image["slice"]), low, high)
            self._send(HTTPStatus.OK, png, "image/png", cache="private, max-age=3600")
        elif method == "POST" and rest == "api/score":
            self._json(station.score(reader, self._body()))
        else:
            self._not_found()

    def _organizer(self, method: str, rest: str) -> None:
        station = self.server.station
        if method != "GET":
            self._not_found()
        elif rest == "api/summary":
            data = station.progress()
            data["links"] = {name: self.server.link("r", token) for name, token in station.keys.readers.items()}
            data["join"] = self.server.link("j", station.keys.join)
            self._json(data)
        elif rest == "summary.csv":
            self._send(HTTPStatus.OK, station.summary_file("csv"), "text/csv; charset=utf-8")
        elif rest == "summary.png":
            self._send(HTTPStatus.OK, station.summary_file("png"), "image/png")
        else:
            self._not_found()

    def _join(self, method: str, rest: str) -> None:
        station = self.server.station
        if method == "POST" and rest == "api/join":
            self._json({"link": f"/r/{station.join(self._body().get('name'))}/"})
        else:
            self._not_found()


def _number(query: dict, name: str) -> float | None:
    values = query.get(name)
    if not values:
        return None
    try:
        value = float(values[0])
    except ValueError:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} must be a number") from None
    if not abs(value) <= 1e30:  # also NaN and infinities
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} must be a number between -1e30 and 1e30")
    return value


class StationServer(ThreadingHTTPServer):
    """The HTTP server of one :class:`Station` (a thread per connection)."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, station: Station, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.station = station
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__((host, port), StationHandler)
        except OSError as error:
            reason = error.strerror or error
            advice = "choose another --port" if error.errno == errno.EADDRINUSE else "check --host"
            raise InputError(f"cannot listen on {host}:{port} ({reason}); {advice}") from None
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown}:{self.server_address[1]}"

    def link(self, kind: str, token: str) -> str:
        """The link of a ``kind`` ("r" reader, "j" join, "o" organizer) page for ``token``."""
        return f"{self.base_url}/{kind}/{token}/"

    def links(self) -> dict[str, str]:
        """``{role: link}``: each reader, the join page and the organizer."""
        keys = self.station.keys
        links = {f"reader {name!r}": self.link("r", token) for name, token in keys.readers.items()}
        links["join (a reader enters a name)"] = self.link("j", keys.join)
        links["organizer (unblinded: keep it private)"] = self.link("o", keys.organizer)
        return links


def serve(study: str | Path, host: str = "127.0.0.1", port: int = 8080, readers: tuple[str, ...] = ()) -> None:
    """Serve ``study`` until interrupted (Ctrl-C or SIGTERM), printing the links first."""
    import signal

    station = Station(study)
    for name in readers:
        station.keys.add_reader(name)
    server = StationServer(station, host, port)
    if not is_loopback(host):
        print(
            f"warning: listening on {host}, reachable from other machines; the links are the only protection "
            "and travel unencrypted (use a VPN or an HTTPS reverse proxy)",
            file=sys.stderr,
        )
    print(f"Reading station for study {station.design.name!r} ({len(station.design.cases)} cases):")
    for role, link in server.links().items():
        print(f"  {role}: {link}")
    print("Stop with Ctrl-C; scores are saved as they are given.", flush=True)

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
