"""Reader-study operations on MRML (what the module's *Reader study* section calls): make a study from volume
nodes, load a case's versions as blinded nodes, and show the unblinded summary as a table and a bar chart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from FastMRICommon.errors import InputError
from FastMRICommon.mrml_nodes import new_table_node
from FastMRICommon.volume_files import read_volume, write_volume

from FastMRReconLib.study.reader_study import SUMMARY_COLUMNS, MethodSummary, ReaderStudy, StudyCase, claim_new_study
from FastMRReconLib.volume_logic import scalar_volume_array


def create_study_from_nodes(path: str | os.PathLike, name: str, methods: Sequence[str],
                            cases: Sequence[Sequence[Any]], seed: int = 0) -> ReaderStudy:
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
    return new_table_node(scene, name, SUMMARY_COLUMNS,
                          [(entry.reader, entry.method, entry.count, entry.mean, entry.sd) for entry in summary])


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
