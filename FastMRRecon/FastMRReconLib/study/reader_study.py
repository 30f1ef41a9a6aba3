"""Blinded reader studies: readers score several versions of each case (e.g. fully sampled, undersampled,
DNN) on a 1-5 Likert scale without knowing which is which.

A study lives in one SQLite file: its identity (a random study id, name, methods, seed), its cases (for each
case, one volume file per method; relative paths are relative to the study file's folder) and every score.
Each score is committed the moment it is given, so a crash loses nothing, and several readers can score
the same file (SQLite locks it for the instant of each write). Scoring a case again replaces that reader's
earlier score of the same image.

A new study file is claimed by an exclusive create (of several processes creating the same file at once,
exactly one gets it; the others are told it exists) and written whole under a temporary name, then renamed
onto the claimed name: a study file is never half-written, and a failed creation removes only its own files.
A file that is not a well-formed study is refused with one line (InputError), never a raw Python error.

Blinding: a reader sees a case's versions in a random order labelled only A, B, C, ...; the order is seeded
by (study seed, case, reader), so it is fixed for a reader across sessions and differs between readers.
Cases are presented in a random order per reader too. The summary (unblinded) gives the mean and SD of the
scores per method, overall and per reader.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
import string
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from FastMRICommon.errors import InputError

#: The Likert scale shown to readers.
LIKERT = {
    5: "excellent",
    4: "good",
    3: "acceptable: diagnostic with minor issues",
    2: "poor",
    1: "very poor: non-diagnostic",
}
FORMAT = "fastmrrecon-reader-study-1"
_SCHEMA = """
CREATE TABLE study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cases (position INTEGER PRIMARY KEY, case_id TEXT NOT NULL UNIQUE, volumes TEXT NOT NULL);
CREATE TABLE scores (
    reader TEXT NOT NULL, case_id TEXT NOT NULL REFERENCES cases(case_id), method TEXT NOT NULL,
    label TEXT NOT NULL, score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5), scored_at TEXT NOT NULL,
    PRIMARY KEY (reader, case_id, method));
"""


@dataclass(frozen=True)
class StudyCase:
    """One case: its id and the volume file of each method."""

    case_id: str
    volumes: dict[str, str]


@dataclass(frozen=True)
class MethodSummary:
    """Scores of one method by one reader ("all" = every reader): count, mean, SD (ddof 1; 0 for one score)."""

    reader: str
    method: str
    count: int
    mean: float
    sd: float


def _seed_for(*parts: object) -> int:
    """A stable integer from text (Python's hash() differs between runs)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "little")


def _reader_name(reader: str) -> str:
    name = (reader or "").strip()
    if not name:
        raise InputError("enter the reader's name before scoring")
    return name


def check_design(methods: Sequence[str], cases: Sequence[StudyCase]) -> tuple[str, ...]:
    """The methods as a tuple, after checking that they and the cases make a study (InputError if not)."""
    methods = tuple(methods)
    if (
        not 2 <= len(methods) <= len(string.ascii_uppercase)
        or len(set(methods)) != len(methods)
        or not all(isinstance(method, str) and method for method in methods)
    ):
        raise InputError(f"a study needs at least two distinct methods, got {list(methods)}")
    if not cases:
        raise InputError("a study needs at least one case")
    ids = [case.case_id for case in cases]
    if len(set(ids)) != len(ids):
        raise InputError("case ids must be unique")
    for case in cases:
        if (
            not isinstance(case.volumes, dict)
            or set(case.volumes) != set(methods)
            or not all(isinstance(volume, str) and volume for volume in case.volumes.values())
        ):
            raise InputError(
                f"case {case.case_id!r} must have one volume per method {list(methods)}, "
                f"has {sorted(case.volumes) if isinstance(case.volumes, dict) else case.volumes!r}"
            )
    return methods


@contextmanager
def claim_new_study(path: str | os.PathLike) -> Iterator[Path]:
    """Claim ``path`` for a new study by creating it exclusively (an empty placeholder until the study is
    written onto it with :meth:`ReaderStudy.create`): of processes claiming the same path at once exactly one
    succeeds, the others get InputError. If the ``with`` block fails, the claimed file (ours) is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        raise InputError(f"{path} already exists: open it to continue that study, or choose a new file name") from None
    try:
        yield path
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _malformed(path: Path, problem: str) -> InputError:
    return InputError(f"{path} is not a well-formed FastMRRecon reader-study file: {problem}")


class ReaderStudy:
    """An open study file (module docstring). Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        """Read the study in ``connection``; a malformed one raises InputError (the caller closes it)."""
        self.path = path
        self._connection = connection
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = {"study", "cases", "scores"} - tables
            if missing:
                raise ValueError(f"it has no {', '.join(sorted(missing))} table")
            info = dict(connection.execute("SELECT key, value FROM study"))
            self.study_id: str = info["study_id"]
            self.name: str = info["name"]
            self.seed: int = int(info["seed"])
            methods = json.loads(info["methods"])
            if not isinstance(methods, list):
                raise ValueError(f"its methods are not a list: {info['methods']!r}")
            self.methods: tuple[str, ...] = tuple(methods)
            self.cases: tuple[StudyCase, ...] = tuple(
                StudyCase(case_id, json.loads(volumes))
                for case_id, volumes in connection.execute("SELECT case_id, volumes FROM cases ORDER BY position")
            )
            check_design(self.methods, self.cases)
            unknown = {row[0] for row in connection.execute("SELECT DISTINCT method FROM scores")} - set(methods)
            if unknown:
                raise ValueError(f"it has scores of unknown methods {sorted(map(str, unknown))}")
        except KeyError as error:
            raise _malformed(path, f"its study table has no {error} entry") from None
        except (ValueError, TypeError, sqlite3.DatabaseError) as error:  # InputError and JSONDecodeError too
            raise _malformed(path, str(error) or type(error).__name__) from None

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        name: str,
        methods: Sequence[str],
        cases: Sequence[StudyCase],
        seed: int = 0,
        claimed: bool = False,
    ) -> ReaderStudy:
        """A new study file; never overwrites an existing file (nothing is lost). Of processes creating the
        same file at once, exactly one succeeds; the others get InputError (module docstring). With
        ``claimed`` the caller already holds ``path`` (:func:`claim_new_study`)."""
        path = Path(path)
        methods = check_design(methods, cases)
        with nullcontext(path) if claimed else claim_new_study(path):
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
            try:
                connection = sqlite3.connect(partial)
                try:
                    with connection:
                        connection.executescript(_SCHEMA)
                        connection.executemany(
                            "INSERT INTO study VALUES (?, ?)",
                            [
                                ("format", FORMAT),
                                ("study_id", uuid.uuid4().hex),
                                ("name", name),
                                ("seed", str(int(seed))),
                                ("methods", json.dumps(list(methods))),
                                ("created", datetime.now(UTC).isoformat()),
                            ],
                        )
                        connection.executemany(
                            "INSERT INTO cases VALUES (?, ?, ?)",
                            [(index, case.case_id, json.dumps(case.volumes)) for index, case in enumerate(cases)],
                        )
                finally:
                    connection.close()
                os.replace(partial, path)  # onto the placeholder we claimed
            finally:
                partial.unlink(missing_ok=True)
            connection = sqlite3.connect(path, timeout=30)
            try:
                return cls(path, connection)
            except BaseException:
                connection.close()
                raise

    @classmethod
    def open(cls, path: str | os.PathLike, expected_study_id: str | None = None) -> ReaderStudy:
        """Open an existing study file; a file that is not a (well-formed) study, or (with
        ``expected_study_id``) a file of another study, is refused with a one-line error and left untouched."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no study file at {path}")
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=30)
        try:
            try:
                info = dict(connection.execute("SELECT key, value FROM study"))
            except sqlite3.DatabaseError:
                raise InputError(f"{path} is not a FastMRRecon reader-study file") from None
            if info.get("format") != FORMAT:
                raise InputError(f"{path} is not a FastMRRecon reader-study file (format {info.get('format')!r})")
            study = cls(path, connection)
        except BaseException:
            connection.close()
            raise
        if expected_study_id is not None and study.study_id != expected_study_id:
            study.close()
            raise InputError(f"{path} belongs to another study ({study.name!r}); open the file of this study")
        return study

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ReaderStudy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- blinding -------------------------------------------------------------------------------------------
    def labels(self) -> tuple[str, ...]:
        """The blinded labels: A, B, C, ... one per method."""
        return tuple(string.ascii_uppercase[: len(self.methods)])

    def case(self, case_id: str) -> StudyCase:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise InputError(f"no case {case_id!r} in study {self.name!r}")

    def case_order(self, reader: str) -> list[str]:
        """The order in which ``reader`` sees the cases (seeded, module docstring)."""
        rng = np.random.default_rng(_seed_for(self.seed, _reader_name(reader), "cases"))
        return [self.cases[index].case_id for index in rng.permutation(len(self.cases))]

    def blinded(self, case_id: str, reader: str) -> dict[str, str]:
        """``{label: method}`` in display order for ``reader`` on ``case_id`` (seeded, module docstring)."""
        self.case(case_id)
        rng = np.random.default_rng(_seed_for(self.seed, _reader_name(reader), case_id))
        return dict(zip(self.labels(), (self.methods[index] for index in rng.permutation(len(self.methods)))))

    def volume_path(self, case_id: str, method: str) -> Path:
        """The file of ``method``'s volume of ``case_id`` (relative paths resolved against the study folder)."""
        path = Path(self.case(case_id).volumes[method])
        return path if path.is_absolute() else self.path.parent / path

    # -- scoring --------------------------------------------------------------------------------------------
    def record(self, reader: str, case_id: str, label: str, score: int) -> None:
        """Store ``reader``'s Likert ``score`` (1-5) of the image shown as ``label`` in ``case_id``, committed
        at once; replaces the reader's earlier score of that image."""
        reader = _reader_name(reader)
        shown = self.blinded(case_id, reader)
        if label not in shown:
            raise InputError(f"no image {label!r} in this case; labels are {', '.join(shown)}")
        if isinstance(score, bool) or int(score) != score or not 1 <= int(score) <= 5:
            raise InputError(f"scores are whole numbers from 1 to 5, got {score!r}")
        with self._connection:
            self._connection.execute(
                "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (reader, case_id, method) DO UPDATE SET "
                "score = excluded.score, label = excluded.label, scored_at = excluded.scored_at",
                (reader, case_id, shown[label], label, int(score), datetime.now(UTC).isoformat()),
            )

    def reader_scores(self, reader: str, case_id: str) -> dict[str, int]:
        """``{label: score}`` already given by ``reader`` in ``case_id`` (blinded: labels, not methods)."""
        reader = _reader_name(reader)
        method_to_label = {method: label for label, method in self.blinded(case_id, reader).items()}
        rows = self._connection.execute(
            "SELECT method, score FROM scores WHERE reader = ? AND case_id = ?", (reader, case_id)
        )
        return {method_to_label[method]: score for method, score in rows}

    def next_case(self, reader: str) -> str | None:
        """The first case in ``reader``'s order that is not fully scored, None when all are done."""
        for case_id in self.case_order(reader):
            if len(self.reader_scores(reader, case_id)) < len(self.methods):
                return case_id
        return None

    def remaining(self, reader: str) -> int:
        """Number of cases ``reader`` has not fully scored."""
        return sum(len(self.reader_scores(reader, case.case_id)) < len(self.methods) for case in self.cases)

    def readers(self) -> list[str]:
        return [row[0] for row in self._connection.execute("SELECT DISTINCT reader FROM scores ORDER BY reader")]

    def activity(self) -> dict[str, tuple[int, str]]:
        """``{reader: (images scored, time of the last score, ISO 8601 UTC)}`` of every reader who has scored."""
        rows = self._connection.execute("SELECT reader, COUNT(*), MAX(scored_at) FROM scores GROUP BY reader")
        return {reader: (int(count), last) for reader, count, last in rows}

    # -- unblinded summary ----------------------------------------------------------------------------------
    def summary(self) -> list[MethodSummary]:
        """Mean and SD of the scores per method, over all readers ("all") then per reader."""
        rows = list(self._connection.execute("SELECT reader, method, score FROM scores"))
        if not rows:
            raise InputError(f"study {self.name!r} has no scores yet")
        result = []
        for reader in ["all"] + self.readers():
            for method in self.methods:
                values = np.array([s for r, m, s in rows if m == method and reader in ("all", r)], float)
                if values.size:
                    result.append(
                        MethodSummary(
                            reader,
                            method,
                            int(values.size),
                            float(values.mean()),
                            float(values.std(ddof=1)) if values.size > 1 else 0.0,
                        )
                    )
        return result


SUMMARY_COLUMNS = ("reader", "method", "count", "mean", "sd")


def write_summary_csv(summary: Sequence[MethodSummary], path: str | os.PathLike) -> Path:
    """The summary as CSV (columns ``SUMMARY_COLUMNS``), written whole or not at all."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS)
        for row in summary:
            writer.writerow([row.reader, row.method, row.count, f"{row.mean:.4f}", f"{row.sd:.4f}"])
    partial.replace(path)
    return path


def plot_summary(summary: Sequence[MethodSummary], path: str | os.PathLike, title: str = "Reader study") -> Path:
    """Bar chart of the mean score (+- SD) per method, overall and per reader, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    readers = list(dict.fromkeys(row.reader for row in summary))
    methods = list(dict.fromkeys(row.method for row in summary))
    width = 0.8 / len(methods)
    figure, axes = plt.subplots(figsize=(1.6 + 1.3 * len(readers) * len(methods) * 0.5, 3.6))
    for index, method in enumerate(methods):
        rows = {row.reader: row for row in summary if row.method == method}
        x = [position + (index - (len(methods) - 1) / 2) * width for position in range(len(readers))]
        axes.bar(
            x,
            [rows[r].mean if r in rows else np.nan for r in readers],
            width,
            yerr=[rows[r].sd if r in rows else 0 for r in readers],
            capsize=3,
            label=method,
        )
    axes.set_xticks(range(len(readers)), [f"{r}\n(all readers)" if r == "all" else r for r in readers])
    axes.set_ylim(0, 6.2)
    axes.set_yticks(range(1, 6))
    axes.set_ylabel("Likert score (5 excellent, 1 non-diagnostic)")
    axes.set_title(title)
    axes.legend(loc="upper center", ncol=len(methods), fontsize=8, frameon=False)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
