"""Reader-study operations on MRML (what the module's *Reader study* section calls): make a study from volume
nodes, load a case's versions as blinded nodes, show the unblinded summary as a table and a bar chart, and
:class:`ReaderSession`, the section's state (cases waiting to become a study, the open study, the case on
screen) without its widgets.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from FastMRICommon.errors import InputError
from FastMRICommon.mrml_nodes import new_table_node, volume_to_array
from FastMRICommon.volume_files import read_volume, write_volume
from FastMRReconLib.study.reader_study import (
    LIKERT,
    SUMMARY_COLUMNS,
    MethodSummary,
    ReaderStudy,
    StudyCase,
    claim_new_study,
)
from FastMRReconLib.study.reader_views import apply_window, common_window, show_blinded
from FastMRReconLib.volume_logic import scalar_volume_array

#: The versions compared in the module's reader studies, in the order of its case selectors.
STUDY_METHODS = ("full", "undersampled", "DNN")
#: The Likert scores in the order a score list shows them, best first.
SCORE_CHOICES = tuple(sorted(LIKERT, reverse=True))


def create_study_from_nodes(
    path: str | os.PathLike, name: str, methods: Sequence[str], cases: Sequence[Sequence[Any]], seed: int = 0
) -> ReaderStudy:
    """A new study whose case ``n`` holds the volume nodes ``cases[n]`` (one per method, same order).

    The volumes are written as NRRD to ``<study name>_volumes/`` beside the study file under neutral names
    (``case_001_1.nrrd``: the file names do not reveal the method), and referenced relative to the study file
    so the folder can be moved or shared. Nothing is written when a volume is not a scalar image. The study
    file is claimed before any volume is written (``claim_new_study``), so of two sessions creating the same
    study at once the second writes nothing; a failed creation removes the files it wrote."""
    path = Path(path)
    if path.exists():
        raise InputError(f"{path} already exists: open it to continue that study, or choose a new file name")
    for case in cases:
        if len(case) != len(methods):
            raise InputError(f"each case needs one volume per method ({', '.join(methods)})")
        for node in case:
            scalar_volume_array(node)
    folder = path.with_name(path.stem + "_volumes")
    written = []
    with claim_new_study(path):
        try:
            study_cases = []
            for index, case in enumerate(cases, start=1):
                volumes = {}
                for number, (method, node) in enumerate(zip(methods, case), start=1):
                    written.append(write_volume(node, folder / f"case_{index:03d}_{number}.nrrd"))
                    volumes[method] = os.path.relpath(written[-1], path.parent)
                study_cases.append(StudyCase(f"case {index:03d}", volumes))
            return ReaderStudy.create(path, name, methods, study_cases, seed, claimed=True)
        except BaseException:
            for file in written:
                Path(file).unlink(missing_ok=True)
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
            raise


def load_blinded_case(scene: Any, study: ReaderStudy, case_id: str, reader: str) -> dict[str, Any]:
    """``{label: new volume node}`` of ``case_id`` in ``reader``'s blinded order; node names carry only the
    case and the label (e.g. "case 003 B"), never the method."""
    nodes = {}
    for label, method in study.blinded(case_id, reader).items():
        path = study.volume_path(case_id, method)
        if not path.is_file():
            raise InputError(f"the study's volume file {path} is missing")
        nodes[label] = read_volume(scene, path, f"{case_id} {label}")
    return nodes


def summary_table_node(scene: Any, summary: Sequence[MethodSummary], name: str = "Reader study summary") -> Any:
    """A new table node with the unblinded summary (columns ``SUMMARY_COLUMNS``)."""
    return new_table_node(
        scene,
        name,
        SUMMARY_COLUMNS,
        [(entry.reader, entry.method, entry.count, entry.mean, entry.sd) for entry in summary],
    )


def summary_chart_node(scene: Any, summary: Sequence[MethodSummary], name: str = "Reader study scores") -> Any:
    """A new bar chart (plot chart node) of the mean score per method: one bar series over all readers, then
    one per reader, each with its own table."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    for reader in dict.fromkeys(entry.reader for entry in summary):
        title = "all readers" if reader == "all" else reader
        table = summary_table_node(scene, [entry for entry in summary if entry.reader == reader], f"{name}: {title}")
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"mean score, {title}")
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetPlotType(series.PlotTypeBar)
        series.SetLabelColumnName("method")
        series.SetYColumnName("mean")
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(name)
    chart.SetYAxisTitle("mean Likert score (5 excellent, 1 non-diagnostic)")
    chart.SetYAxisRangeAuto(False)
    chart.SetYAxisRange(0, 5.5)
    return chart


@dataclass(frozen=True)
class ReadingState:
    """What the reading panel shows for a reader: ``case`` on screen (None: none, or all scored), ``given``
    ``{label: score}`` for it, ``remaining`` of ``total`` cases left to score, ``reading`` (a case is shown:
    scores can be given), ``can_advance`` (every version of the case scored) and ``can_finish`` (a study is
    open)."""

    case: str | None = None
    given: dict[str, int] = field(default_factory=dict)
    remaining: int = 0
    total: int = 0
    reading: bool = False
    can_advance: bool = False
    can_finish: bool = False


class ReaderSession:
    """The module's *Reader study* section without its widgets, on ``scene``: cases added for a new study
    (:meth:`add_case`, :meth:`create`), then reading one study (:meth:`open`, :meth:`show_next_case`,
    :meth:`score`, :meth:`state`, :meth:`finish`, :meth:`close`). The case on screen is held as blinded
    volume nodes (named by case and label only) shown in the reader views (``reader_views``: the reader
    layout must be shown first, :class:`reader_views.ReaderLayout`); they are removed when the next case is
    shown or the study closed. Every error is a one-line InputError."""

    def __init__(self, scene: Any, methods: Sequence[str] = STUDY_METHODS) -> None:
        self.scene = scene
        self.methods = tuple(methods)
        self.pending: list[list[Any]] = []  # volume nodes of each case added, one per method
        self.study: ReaderStudy | None = None
        self.case: str | None = None
        self.case_nodes: dict[str, Any] = {}  # {label: blinded volume node} of the case on screen

    # -- a new study ----------------------------------------------------------------------------------------
    def add_case(self, nodes: Sequence[Any]) -> int:
        """Add a case: one distinct volume node per method, in ``methods`` order; returns the cases added."""
        nodes = list(nodes)
        if (
            len(nodes) != len(self.methods)
            or any(node is None for node in nodes)
            or len({node.GetID() for node in nodes}) != len(nodes)
        ):
            raise InputError(f"select {len(self.methods)} different volumes: {', '.join(self.methods)}")
        self.pending.append(nodes)
        return len(self.pending)

    def create(self, path: str | os.PathLike, seed: int | None = None) -> Path:
        """Write the added cases as a new study file ``path`` (its name: the file name's stem; blinding
        ``seed``: random unless given) and forget them; returns the path (``create_study_from_nodes``)."""
        if not path:
            raise InputError("choose a study file name (.sqlite) first")
        if not self.pending:
            raise InputError("add at least one case first")
        path = Path(path)
        create_study_from_nodes(
            path, path.stem, self.methods, self.pending, seed=secrets.randbelow(2**31) if seed is None else seed
        ).close()
        self.pending = []
        return path

    # -- reading --------------------------------------------------------------------------------------------
    def open(self, path: str | os.PathLike) -> ReaderStudy:
        """Close any study, then open the study file ``path`` for reading."""
        self.close()
        if not path:
            raise InputError("choose the study file (.sqlite) first")
        self.study = ReaderStudy.open(path)
        return self.study

    def show_next_case(self, reader: str) -> str | None:
        """Remove the case on screen, then show ``reader``'s next case that is not fully scored: its versions
        as blinded volume nodes, one per reader view, in one grey window (``common_window``: no version stands
        out by its display). Returns the case id, or None when the reader has scored every case."""
        study = self._open_study()
        self._remove_case_nodes()
        self.case = study.next_case(reader)
        if self.case is not None:
            self.case_nodes = load_blinded_case(self.scene, study, self.case, reader)
            apply_window(
                list(self.case_nodes.values()),
                common_window([volume_to_array(node)[0] for node in self.case_nodes.values()]),
            )
            show_blinded(self.scene, [node.GetID() for node in self.case_nodes.values()])
        return self.case

    def score(self, reader: str, label: str, score: int) -> None:
        """Record ``reader``'s ``score`` (1-5, ``LIKERT``) of the image labelled ``label`` of the case on
        screen (saved at once; a second score replaces the first)."""
        if self.case is None:
            raise InputError("no case is shown: start reading first")
        self._open_study().record(reader, self.case, label, score)

    def state(self, reader: str) -> ReadingState:
        """The :class:`ReadingState` of ``reader``."""
        if self.study is None:
            return ReadingState()
        total = len(self.study.cases)
        if self.case is None:
            return ReadingState(total=total, can_finish=True)
        given = self.study.reader_scores(reader, self.case)
        return ReadingState(
            self.case, given, self.study.remaining(reader), total, True, len(given) == len(self.methods), True
        )

    def finish(self) -> tuple[Any, Any]:
        """Close the study and return new nodes with its unblinded summary: (table, bar chart). InputError
        (and the study stays open) when it has no scores yet."""
        summary = self._open_study().summary()
        self.close()
        return summary_table_node(self.scene, summary), summary_chart_node(self.scene, summary)

    def close(self) -> None:
        """Remove the case on screen and close the study (nothing is lost: every score is saved when given)."""
        self._remove_case_nodes()
        if self.study is not None:
            self.study.close()
        self.study, self.case = None, None

    def _open_study(self) -> ReaderStudy:
        if self.study is None:
            raise InputError("no study is open: start reading first")
        return self.study

    def _remove_case_nodes(self) -> None:
        for node in self.case_nodes.values():
            if self.scene.IsNodePresent(node):
                self.scene.RemoveNode(node)
        self.case_nodes = {}
