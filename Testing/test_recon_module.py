"""The FastMRRecon module's logic on a real MRML scene: Reconstruct on volume nodes, ROI SNR/CNR from a markups
point list to a table node and CSV, and the blinded reader study (store, blinding, summary, views)."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import vtk
from slicer.util import arrayFromVolume

from FastMRICommon.device import ensure_torch
from FastMRICommon.errors import Cancelled, InputError
from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.model_files import sha256_file
from FastMRICommon.mrml_nodes import geometry_of, new_volume_node
from FastMRICommon.volume_files import read_volume
from FastMRReconLib.metrics import roi_statistics
from FastMRReconLib.model.reconstructor import Reconstructor
from FastMRReconLib.model.settings import STRENGTHS
from FastMRReconLib.module_logic import ReconModuleLogic
from FastMRReconLib.sample_data import MODULE_SAMPLE_DIR, MODULE_SAMPLE_FILE, MODULE_SAMPLE_SHA256, module_sample_path
from FastMRReconLib.study.reader_session import (
    create_study_from_nodes,
    load_blinded_case,
    summary_chart_node,
    summary_table_node,
)
from FastMRReconLib.study.reader_study import ReaderStudy, StudyCase, plot_summary, write_summary_csv
from FastMRReconLib.study.reader_views import (
    READER_LAYOUT_ID,
    VIEW_NAMES,
    SavedViews,
    apply_window,
    blinded_panel,
    common_window,
    install_reader_layout,
    reader_layout_xml,
    show_blinded,
)
from FastMRReconLib.study.roi_table import TABLE_COLUMNS, compare_volumes, roi_table_node, write_table_csv
from FastMRReconLib.volume_logic import (
    CHANGE_MAP_COLORS,
    CHANGE_MAP_RANGE,
    CHANGE_MAP_REFERENCE,
    noise_arguments,
    reconstruct_volume_node,
)

GEOMETRY = VolumeGeometry((0.9, 0.9, 3.0), (12.0, -30.0, 4.0), ((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)))
METHODS = ("full", "undersampled", "DNN")


def phantom(shape=(3, 64, 56), seed=0, noise=4.0) -> np.ndarray:
    """Two tissues in an ellipse, noisy air around it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1 : 1 : shape[1] * 1j, -1 : 1 : shape[2] * 1j]
    head = ((x / 0.8) ** 2 + (y / 0.85) ** 2) < 1
    image = np.where(head, np.where(x < 0, 400.0, 250.0), 0.0)
    return np.abs(np.repeat(image[None], shape[0], 0) + rng.normal(0, noise, shape))


@pytest.fixture(scope="module")
def reconstructor():
    return Reconstructor.load(device="cpu")


def ras(node, ijk) -> list[float]:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return list(matrix.MultiplyPoint([float(v) for v in ijk] + [1.0])[:3])


def point_list(scene, node, points, name="ROI points"):
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for ijk in points:
        markups.AddControlPoint(vtk.vtkVector3d(*ras(node, ijk)))
    return markups


# -- Reconstruct ------------------------------------------------------------------------------------------------
def test_reconstruct_volume_node_new_output_keeps_input_and_geometry(scene, reconstructor):
    image = phantom()
    node = new_volume_node(scene, image, GEOMETRY, "knee R2")
    mtime = node.GetMTime()
    seen = []
    output = reconstruct_volume_node(node, reconstructor, batch_size=2, progress=lambda f, m: seen.append(f))
    assert output.GetName() == "knee R2 DNN" and output is not node and output.GetScene() is scene
    assert node.GetMTime() == mtime
    np.testing.assert_array_equal(arrayFromVolume(node), image)
    assert geometry_of(output).matches(GEOMETRY)
    result = arrayFromVolume(output)
    assert result.shape == image.shape and result.min() >= 0
    assert 0.8 < result[image > 100].mean() / image[image > 100].mean() < 1.2  # intensity scale kept
    assert seen and seen[-1] == 1.0 and len(seen) >= 2  # progress per batch of 2 slices
    display = output.GetDisplayNode()
    assert not display.GetAutoWindowLevel() and display.GetWindow() > 0


def test_reconstruct_into_a_chosen_output_and_refusals(scene, reconstructor):
    node = new_volume_node(scene, phantom(), GEOMETRY, "input")
    target = new_volume_node(scene, np.zeros((1, 20, 20)), VolumeGeometry(), "target")
    assert reconstruct_volume_node(node, reconstructor, output=target) is target
    assert arrayFromVolume(target).shape == phantom().shape and geometry_of(target).matches(GEOMETRY)
    with pytest.raises(InputError, match="differ from the input"):
        reconstruct_volume_node(node, reconstructor, output=node)
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    with pytest.raises(InputError, match="label map"):
        reconstruct_volume_node(labels, reconstructor)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no image data"):
        reconstruct_volume_node(empty, reconstructor)
    vector = new_volume_node(scene, np.ones((2, 20, 20, 3)), VolumeGeometry(), "rgb", "vtkMRMLVectorVolumeNode")
    with pytest.raises(InputError, match="select a scalar volume|components"):
        reconstruct_volume_node(vector, reconstructor)


def test_cancelled_reconstruction_adds_nothing(scene, reconstructor):
    node = new_volume_node(scene, phantom((6, 48, 48)), GEOMETRY, "input")
    count = scene.GetNumberOfNodes()
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Cancelled):
        reconstruct_volume_node(node, reconstructor, batch_size=2, cancel=cancel)
    assert scene.GetNumberOfNodes() == count


# -- Reconstruct: strength, noise SD, change map ------------------------------------------------------------
@pytest.fixture(scope="module")
def noise_aware():
    """A small noise-aware network with random weights: every part perturbed, so its output differs from its
    input and depends on the noise map it is told (a fresh one starts as the identity in places); without the
    SNR gate, which would keep this clean test image as it is."""
    import torch

    from FastMRReconLib.model.network import NetworkConfig, ReconstructionNetwork

    torch.manual_seed(0)
    network = ReconstructionNetwork(NetworkConfig(channels=4, depth=2, fidelity_channels=4, noise_input=True))
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    return Reconstructor(network, "cpu", gate=None)


def test_change_map_node_is_the_change_in_noise_sds_referenced_from_the_output(scene, noise_aware):
    image = phantom()
    volume = image.astype(np.float32)  # what the reconstructor works on
    node = new_volume_node(scene, image, GEOMETRY, "head R2")
    mtime = node.GetMTime()
    output = reconstruct_volume_node(node, noise_aware, change_map=True)
    change = output.GetNodeReference(CHANGE_MAP_REFERENCE)
    assert change is not None and change.GetScene() is scene and change.GetID() not in (node.GetID(), output.GetID())
    assert change.GetName() == "head R2 DNN change [noise SD]" and geometry_of(change).matches(GEOMETRY)
    values = arrayFromVolume(change)
    assert values.shape == image.shape and values.min() >= 0 and values.max() > 0.1
    expected = np.abs(arrayFromVolume(output) - volume) / noise_aware.noise_sd_maps(volume)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
    display = change.GetDisplayNode()
    assert display.GetColorNodeID() == CHANGE_MAP_COLORS and not display.GetAutoWindowLevel()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx(CHANGE_MAP_RANGE)
    assert node.GetMTime() == mtime  # the input is untouched
    np.testing.assert_array_equal(arrayFromVolume(node), image)
    # a given noise SD is the change map's unit, and what the network is told (times the strength)
    given = reconstruct_volume_node(node, noise_aware, noise_sd=6.0, strength=2.0, change_map=True)
    np.testing.assert_allclose(
        arrayFromVolume(given.GetNodeReference(CHANGE_MAP_REFERENCE)),
        np.abs(arrayFromVolume(given) - volume) / 6.0,
        rtol=1e-5,
        atol=1e-6,
    )
    weakest = reconstruct_volume_node(node, noise_aware, noise_sd=6.0, strength=0.0)
    assert np.abs(arrayFromVolume(weakest) - arrayFromVolume(given)).max() > 1e-3 * image.max()
    assert weakest.GetNodeReference(CHANGE_MAP_REFERENCE) is None  # no change map unless asked for


def test_change_map_colours_are_one_of_slicers_default_tables(scene):
    import slicer

    colors = slicer.vtkMRMLColorLogic()
    colors.SetMRMLScene(scene)  # adds the default colour nodes, as Slicer does at startup
    assert scene.GetNodeByID(CHANGE_MAP_COLORS) is not None


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"noise_sd": 0}, "noise SD"),
        ({"noise_sd": -1.0}, "noise SD"),
        ({"noise_sd": float("nan")}, "noise SD"),
        ({"strength": -0.1}, "strength"),
        ({"strength": 2.5}, "strength"),
    ],
)
def test_bad_noise_settings_are_refused_before_the_scene_changes(scene, noise_aware, settings, message):
    node = new_volume_node(scene, phantom(), GEOMETRY, "input")
    target = new_volume_node(scene, np.ones((1, 20, 20)), VolumeGeometry(), "target")
    count, target_mtime = scene.GetNumberOfNodes(), target.GetMTime()
    with pytest.raises(InputError, match=message):
        reconstruct_volume_node(node, noise_aware, change_map=True, **settings)
    with pytest.raises(InputError, match=message):
        reconstruct_volume_node(node, noise_aware, output=target, change_map=True, **settings)
    assert scene.GetNumberOfNodes() == count and target.GetMTime() == target_mtime
    assert target.GetNodeReference(CHANGE_MAP_REFERENCE) is None


def test_the_modules_strength_names_and_noise_settings():
    from FastMRICommon.settings import settings_field
    from FastMRReconLib.model import reconstructor
    from FastMRReconLib.model.settings import ReconstructionSettings

    choices = settings_field(ReconstructionSettings, "strength").setting.choices
    assert choices == tuple(STRENGTHS) == ("low", "medium", "high")  # the module's choices, mildest first
    assert reconstructor.STRENGTHS is STRENGTHS  # one definition, torch-free (model.settings)
    assert STRENGTHS["low"] < STRENGTHS["medium"] == 1.0 < STRENGTHS["high"]
    for name in STRENGTHS:
        assert noise_arguments(name) == (None, STRENGTHS[name])  # None: the noise SD is measured
    assert noise_arguments("high", 12) == (12.0, STRENGTHS["high"])
    with pytest.raises(InputError, match="one of low, medium, high, got 'extreme'"):
        noise_arguments("extreme")
    for bad in (0.0, -3.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="noise SD must be a positive number"):
            noise_arguments("medium", bad)


# -- ROI SNR / CNR ------------------------------------------------------------------------------------------------
def test_roi_table_from_markups_matches_the_roi_statistics(scene, tmp_path):
    full = phantom(seed=1, noise=3.0)
    noisy = phantom(seed=2, noise=9.0)
    nodes = [new_volume_node(scene, full, GEOMETRY, "full"), new_volume_node(scene, noisy, GEOMETRY, "undersampled")]
    points = [(18, 32, 1), (38, 32, 1), (4, 4, 1)]
    markups = point_list(scene, nodes[0], points)
    rows = compare_volumes(nodes, markups, reference=nodes[0], size=4)
    expected = [roi_statistics(array, *points, size=4) for array in (full, noisy)]
    assert [row.volume for row in rows] == ["full", "undersampled"]
    for row, stats in zip(rows, expected):
        assert row.stats == stats
    assert rows[0].snr1_change == 0.0
    assert rows[1].snr1_change == pytest.approx(100 * (expected[1].snr1 - expected[0].snr1) / expected[0].snr1)
    assert rows[1].snr1_change < -30  # three times the noise
    table = roi_table_node(scene, rows)
    assert table.GetNumberOfRows() == 2 and table.GetNumberOfColumns() == len(TABLE_COLUMNS)
    assert table.GetCellText(1, 0) == "undersampled"
    path = write_table_csv(table, tmp_path / "roi.csv")
    with open(path) as handle:
        written = list(csv.DictReader(handle))
    assert [r["volume"] for r in written] == ["full", "undersampled"]
    assert float(written[1]["CNR"]) == pytest.approx(expected[1].cnr, rel=1e-4)
    assert not list(tmp_path.glob("*.partial*"))


def test_roi_points_follow_the_volume_transform(scene):
    image = phantom(seed=3)
    node = new_volume_node(scene, image, VolumeGeometry(), "moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 5.0)  # the volume is shown 5 mm to the right
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "points")
    for i, j, k in [(18, 32, 1), (38, 32, 1), (4, 4, 1)]:
        markups.AddControlPoint(vtk.vtkVector3d(i + 5.0, j, k))  # world = voxel + shift
    row = compare_volumes([node], markups)[0]
    assert row.stats == roi_statistics(image, (18, 32, 1), (38, 32, 1), (4, 4, 1))


def test_roi_bad_input_is_one_clear_error(scene, tmp_path):
    node = new_volume_node(scene, phantom(), GEOMETRY, "full")
    flat = new_volume_node(scene, np.where(phantom(noise=0) > 0, 300.0, 0.0), GEOMETRY, "SENSE")
    two = point_list(scene, node, [(18, 32, 1), (38, 32, 1)])
    with pytest.raises(InputError, match="exactly three points.*it has 2"):
        compare_volumes([node], two)
    outside = point_list(scene, node, [(18, 32, 1), (38, 32, 9), (4, 4, 1)])
    with pytest.raises(InputError, match="'full'.*outside the image"):
        compare_volumes([node], outside)
    edge = point_list(scene, node, [(18, 32, 1), (38, 32, 1), (1, 4, 1)])
    with pytest.raises(InputError, match="away from the edge"):
        compare_volumes([node], edge)
    good = point_list(scene, node, [(18, 32, 1), (38, 32, 1), (4, 4, 1)])
    with pytest.raises(InputError, match="'SENSE'.*zero SD"):
        compare_volumes([node, flat], good)
    other = new_volume_node(scene, phantom(), GEOMETRY, "other")
    with pytest.raises(InputError, match="reference volume 'other' must be one of"):
        compare_volumes([node], good, reference=other)
    with pytest.raises(InputError, match="point list"):
        compare_volumes([node], None)
    with pytest.raises(InputError, match=r"\.csv"):
        write_table_csv(roi_table_node(scene, compare_volumes([node], good)), tmp_path / "table.txt")
    assert not list(tmp_path.iterdir())


# -- Reader study: store, blinding, summary ----------------------------------------------------------------------
def make_study(path: Path, cases: int = 6, seed: int = 3) -> ReaderStudy:
    return ReaderStudy.create(
        path,
        "knee study",
        METHODS,
        [StudyCase(f"case {n}", {m: f"vol_{n}_{m}.nrrd" for m in METHODS}) for n in range(cases)],
        seed=seed,
    )


def test_blinding_is_seeded_per_reader_and_case(tmp_path):
    with make_study(tmp_path / "study.sqlite", cases=12) as study:
        first = {case.case_id: study.blinded(case.case_id, "reader 1") for case in study.cases}
        for case_id, shown in first.items():
            assert list(shown) == ["A", "B", "C"] and sorted(shown.values()) == sorted(METHODS)
            assert study.blinded(case_id, "reader 1") == shown  # same reader, same order
        assert len({tuple(shown.values()) for shown in first.values()}) >= 3  # orders vary between cases
        second = {case.case_id: study.blinded(case.case_id, "reader 2") for case in study.cases}
        assert second != first  # and between readers
        assert sorted(study.case_order("reader 1")) == sorted(case.case_id for case in study.cases)
        assert study.case_order("reader 1") != study.case_order("reader 2")
    with ReaderStudy.open(tmp_path / "study.sqlite") as again:  # fixed across sessions
        assert {c: again.blinded(c, "reader 1") for c in first} == first


def test_every_score_is_committed_at_once_and_rescoring_replaces(tmp_path):
    path = tmp_path / "study.sqlite"
    study = make_study(path)
    case = study.next_case("ann")
    study.record("ann", case, "B", 4)
    # another process (another reader, or the file after a crash) sees it immediately
    with sqlite3.connect(path) as other:
        rows = other.execute("SELECT reader, case_id, method, label, score FROM scores").fetchall()
    assert rows == [("ann", case, study.blinded(case, "ann")["B"], "B", 4)]
    study.record("ann", case, "B", 2)
    assert study.reader_scores("ann", case) == {"B": 2}
    second = ReaderStudy.open(path)  # a second reader on the same file at the same time
    second.record("bob", case, "A", 5)
    study.record("ann", case, "A", 3)
    assert sorted(study.readers()) == ["ann", "bob"] and second.reader_scores("ann", case) == {"A": 3, "B": 2}
    second.close()
    study.close()


def test_next_case_remaining_and_summary(tmp_path):
    with make_study(tmp_path / "study.sqlite", cases=3) as study:
        given = {"full": [5, 4, 5], "undersampled": [2, 3, 2], "DNN": [4, 4, 3]}
        for reader in ("ann", "bob"):
            for index in range(3):
                case = study.next_case(reader)
                assert study.remaining(reader) == 3 - index
                for label, method in study.blinded(case, reader).items():
                    study.record(reader, case, label, given[method][index] - (reader == "bob" and method == "DNN"))
            assert study.next_case(reader) is None and study.remaining(reader) == 0
        summary = {(row.reader, row.method): row for row in study.summary()}
        assert summary[("ann", "DNN")].mean == pytest.approx(11 / 3)
        assert summary[("bob", "DNN")].mean == pytest.approx(8 / 3)
        overall = summary[("all", "undersampled")]
        assert overall.count == 6 and overall.mean == pytest.approx(7 / 3)
        assert overall.sd == pytest.approx(np.std([2, 3, 2, 2, 3, 2], ddof=1))
        rows = study.summary()
        csv_path = write_summary_csv(rows, tmp_path / "summary.csv")
        with open(csv_path) as handle:
            table = list(csv.DictReader(handle))
        assert len(table) == 9 and table[0]["reader"] == "all"
        png = plot_summary(rows, tmp_path / "summary.png")
        assert png.stat().st_size > 5000


def test_bad_scores_and_bad_study_files(tmp_path):
    path = tmp_path / "study.sqlite"
    study = make_study(path)
    case = study.next_case("ann")
    for label, score, message in (
        ("D", 3, "no image 'D'"),
        ("A", 6, "1 to 5"),
        ("A", 0, "1 to 5"),
        ("A", 2.5, "1 to 5"),
        ("A", True, "1 to 5"),
    ):
        with pytest.raises(InputError, match=message):
            study.record("ann", case, label, score)
    with pytest.raises(InputError, match="reader's name"):
        study.record("  ", case, "A", 3)
    with pytest.raises(InputError, match="no case"):
        study.blinded("case 99", "ann")
    with pytest.raises(InputError, match="no scores yet"):
        study.summary()
    study_id = study.study_id
    study.close()
    with pytest.raises(InputError, match="already exists"):
        make_study(path)
    other = make_study(tmp_path / "other.sqlite")
    other.close()
    before = (tmp_path / "other.sqlite").read_bytes()
    with pytest.raises(InputError, match="belongs to another study"):
        ReaderStudy.open(tmp_path / "other.sqlite", expected_study_id=study_id)
    assert (tmp_path / "other.sqlite").read_bytes() == before
    (tmp_path / "notes.sqlite").write_text("not a database")
    with pytest.raises(InputError, match="not a FastMRRecon reader-study file"):
        ReaderStudy.open(tmp_path / "notes.sqlite")
    with sqlite3.connect(tmp_path / "foreign.sqlite") as foreign:
        foreign.execute("CREATE TABLE things (x)")
    with pytest.raises(InputError, match="not a FastMRRecon reader-study file"):
        ReaderStudy.open(tmp_path / "foreign.sqlite")
    with pytest.raises(InputError, match="no study file"):
        ReaderStudy.open(tmp_path / "missing.sqlite")
    for methods, message in ((("full",), "at least two"), (("a", "a"), "distinct")):
        with pytest.raises(InputError, match=message):
            ReaderStudy.create(tmp_path / "x.sqlite", "x", methods, [StudyCase("c", {"a": "f"})])
    with pytest.raises(InputError, match="one volume per method"):
        ReaderStudy.create(tmp_path / "x.sqlite", "x", METHODS, [StudyCase("c", {"full": "f"})])
    assert not (tmp_path / "x.sqlite").exists()


def _race_to_create(worker: int, studies: list, barrier, results) -> None:
    """One of two processes creating the same studies at the same moment (the test below): each ``(kind,
    path)`` is made from this worker's own volumes, so the file shows whose creation won."""
    import slicer

    scene = slicer.vtkMRMLScene()
    nodes = [new_volume_node(scene, phantom(seed=worker) + 1000.0 * worker, GEOMETRY, m) for m in METHODS]
    for kind, path in studies:
        barrier.wait(timeout=120)
        try:
            if kind == "cases":
                volumes = {method: f"w{worker}_{method}.nrrd" for method in METHODS}
                study = ReaderStudy.create(path, "race", METHODS, [StudyCase("c", volumes)])
            else:
                study = create_study_from_nodes(path, "race", METHODS, [nodes])
            study.close()
            results.put((str(path), "created", worker))
        except InputError as error:
            results.put((str(path), "refused", str(error)))
        except Exception as error:  # noqa: BLE001 - reported to the test, which fails on it
            results.put((str(path), "error", repr(error)))


def test_two_processes_creating_the_same_study_at_once(tmp_path):
    """Exactly one creates the study, the other is told it exists; the file is whole and the winner's (the
    loser removes nothing of it and writes none of its volumes)."""
    import multiprocessing
    import sys

    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    studies = [("cases", tmp_path / f"study_{n}.sqlite") for n in range(16)] + [
        ("nodes", tmp_path / f"reading_{n}" / "study.sqlite") for n in range(4)
    ]
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_race_to_create, args=(w, studies, barrier, results)) for w in (1, 2)]
    for worker in workers:
        worker.start()
    outcomes = {}
    for _ in range(2 * len(studies)):
        path, outcome, detail = results.get(timeout=300)
        outcomes.setdefault(path, []).append((outcome, detail))
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    for kind, path in studies:
        got = sorted(outcomes[str(path)], key=lambda item: item[0])
        assert [outcome for outcome, _ in got] == ["created", "refused"], got
        assert "already exists" in got[1][1]
        winner = got[0][1]
        with ReaderStudy.open(path) as study:
            if kind == "cases":
                assert study.cases[0].volumes["full"] == f"w{winner}_full.nrrd"
            else:
                import slicer

                node = read_volume(slicer.vtkMRMLScene(), study.volume_path("case 001", "full"))
                np.testing.assert_allclose(arrayFromVolume(node), phantom(seed=winner) + 1000.0 * winner, rtol=1e-6)
    assert not list(tmp_path.rglob("*.partial"))


def _malformed_study(path: Path, statement: str, parameters=()) -> None:
    make_study(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute(statement, parameters)


@pytest.mark.parametrize(
    "statement, parameters",
    [
        ("DELETE FROM study WHERE key = 'study_id'", ()),  # was KeyError
        ("DELETE FROM study WHERE key = 'methods'", ()),
        ("UPDATE study SET value = 'seven' WHERE key = 'seed'", ()),  # was ValueError
        ("UPDATE study SET value = '[\"full\", ' WHERE key = 'methods'", ()),  # was JSONDecodeError
        ("UPDATE study SET value = '\"full\"' WHERE key = 'methods'", ()),  # a string, not a list
        ("UPDATE study SET value = '[\"full\"]' WHERE key = 'methods'", ()),  # one method
        ("UPDATE cases SET volumes = '{\"full\": ' WHERE position = 0", ()),
        ("UPDATE cases SET volumes = ? WHERE position = 0", (json.dumps({"full": "a.nrrd"}),)),  # was KeyError later
        ("UPDATE cases SET volumes = '[1, 2, 3]' WHERE position = 0", ()),
        ("DROP TABLE scores", ()),  # was sqlite3.OperationalError on the first score
        ("DELETE FROM cases", ()),
        ("INSERT INTO scores VALUES ('ann', 'case 0', 'CS', 'A', 3, 'now')", ()),  # was KeyError in reader_scores
    ],
)
def test_a_malformed_study_file_is_one_clear_error_and_left_untouched(tmp_path, statement, parameters):
    path = tmp_path / "study.sqlite"
    _malformed_study(path, statement, parameters)
    before = path.read_bytes()
    message = r"study\.sqlite is not a (well-formed )?FastMRRecon reader-study file"
    with pytest.raises(InputError, match=message) as raised:
        ReaderStudy.open(path)
    assert "\n" not in str(raised.value)
    with pytest.raises(InputError):
        ReaderStudy.open(path, expected_study_id="0" * 32)
    assert path.read_bytes() == before


def test_an_empty_file_at_the_study_path_is_refused_and_kept(tmp_path):
    path = tmp_path / "study.sqlite"
    path.touch()  # e.g. another session's claim, a moment before its study is written onto it
    with pytest.raises(InputError, match="not a FastMRRecon reader-study file"):
        ReaderStudy.open(path)
    with pytest.raises(InputError, match="already exists"):
        make_study(path)
    assert path.is_file() and path.stat().st_size == 0


# -- Reader study on MRML: volumes, blinded nodes, views -----------------------------------------------------
def test_study_from_nodes_loads_blinded_case_nodes(scene, tmp_path):
    arrays = {method: phantom(seed=index) for index, method in enumerate(METHODS)}
    nodes = [new_volume_node(scene, arrays[m], GEOMETRY, f"knee {m}") for m in METHODS]
    study = create_study_from_nodes(tmp_path / "reading" / "study.sqlite", "knee", METHODS, [nodes], seed=5)
    files = sorted(p.name for p in (tmp_path / "reading" / "study_volumes").iterdir())
    assert files == ["case_001_1.nrrd", "case_001_2.nrrd", "case_001_3.nrrd"]  # names do not reveal the method
    assert all(not Path(v).is_absolute() for v in study.cases[0].volumes.values())
    reader_scene = type(scene)()
    shown = load_blinded_case(reader_scene, study, "case 001", "ann")
    for label, method in study.blinded("case 001", "ann").items():
        assert shown[label].GetName() == f"case 001 {label}"
        np.testing.assert_allclose(arrayFromVolume(shown[label]), arrays[method], rtol=1e-6)
        assert geometry_of(shown[label]).matches(GEOMETRY)
    study.record("ann", "case 001", "A", 4)
    study.record("bob", "case 001", "B", 2)
    summary = study.summary()
    table = summary_table_node(reader_scene, summary)
    assert table.GetNumberOfRows() == len(summary)
    chart = summary_chart_node(reader_scene, summary)
    assert chart.GetNumberOfPlotSeriesNodes() == 3  # all readers, ann, bob
    series = chart.GetNthPlotSeriesNode(1)
    assert series.GetPlotType() == series.PlotTypeBar and series.GetYColumnName() == "mean"
    assert series.GetName() == "mean score, ann" and series.GetTableNode().GetNumberOfRows() == 1
    study.close()
    with pytest.raises(InputError, match="already exists"):
        create_study_from_nodes(tmp_path / "reading" / "study.sqlite", "knee", METHODS, [nodes])
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "seg")
    with pytest.raises(InputError, match="label map"):
        create_study_from_nodes(tmp_path / "b.sqlite", "b", METHODS, [[nodes[0], nodes[1], labels]])
    assert not (tmp_path / "b.sqlite").exists() and not (tmp_path / "b_volumes").exists()


def test_reader_layout_and_blinded_views(scene, tmp_path):
    layout = scene.AddNewNodeByClass("vtkMRMLLayoutNode")
    assert layout.AddLayoutDescription(READER_LAYOUT_ID, reader_layout_xml("ABC"))
    layout.SetViewArrangement(READER_LAYOUT_ID)
    description = layout.GetLayoutDescription(READER_LAYOUT_ID)
    assert description.count('class="vtkMRMLSliceNode"') == 3
    assert all(f'singletontag="{name}"' in description for name in VIEW_NAMES)
    assert [description.count(f">{label}<") for label in "ABC"] == [1, 1, 1]
    with pytest.raises(InputError):
        reader_layout_xml("ABCD")
    volumes = [new_volume_node(scene, phantom(seed=s) * (1 + s), GEOMETRY, f"v{s}") for s in range(3)]
    with pytest.raises(InputError, match="switch to the reader-study layout"):
        show_blinded(scene, [v.GetID() for v in volumes])
    composites = []
    for name in VIEW_NAMES:
        composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        composite.SetLayoutName(name)
        composite.SetForegroundVolumeID(volumes[0].GetID())
        composites.append(composite)
    show_blinded(scene, [v.GetID() for v in volumes])
    for composite, volume in zip(composites, volumes):
        assert composite.GetBackgroundVolumeID() == volume.GetID()
        assert composite.GetForegroundVolumeID() is None and composite.GetLinkedControl()
    window = common_window([arrayFromVolume(v) for v in volumes])
    apply_window(volumes, window)
    assert {(v.GetDisplayNode().GetWindow(), v.GetDisplayNode().GetLevel()) for v in volumes} == {
        (window[1] - window[0], (window[0] + window[1]) / 2)
    }
    png = blinded_panel([arrayFromVolume(v)[1] for v in volumes], list("ABC"), tmp_path / "view.png", window)
    assert png.stat().st_size > 5000


def slicer_layout(scene):
    """The layout logic Slicer's layout manager uses, on ``scene`` with Slicer's slice orientation presets: it
    creates the layout node and the conventional Red (axial), Yellow (sagittal), Green (coronal) views."""
    import slicer

    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    logic = slicer.vtkMRMLLayoutLogic()
    logic.SetMRMLScene(scene)
    return logic


def views(scene):
    """{view name: (orientation, label)} of the slice views."""
    collection = scene.GetNodesByClass("vtkMRMLSliceNode")
    nodes = [collection.GetItemAsObject(index) for index in range(collection.GetNumberOfItems())]
    return {node.GetLayoutName(): (node.GetOrientation(), node.GetLayoutLabel()) for node in nodes}


def test_the_reader_layout_relabels_the_existing_views_and_leaving_restores_them(scene):
    logic = slicer_layout(scene)
    layout = logic.GetLayoutNode()
    conventional = {"Red": ("Axial", "R"), "Yellow": ("Sagittal", "Y"), "Green": ("Coronal", "G")}
    assert views(scene) == conventional  # the views exist before the study, as in Slicer
    volumes = [new_volume_node(scene, phantom(seed=s), GEOMETRY, f"v{s}") for s in range(3)]
    red = scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    red.SetSliceOffset(7.5)  # where the user was
    red_matrix = [red.GetSliceToRAS().GetElement(r, c) for r in range(4) for c in range(4)]
    composites = {}
    for name in VIEW_NAMES:  # in Slicer, each view's slice logic makes its composite node
        composites[name] = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        composites[name].SetLayoutName(name)
    composites["Red"].SetBackgroundVolumeID(volumes[0].GetID())

    saved = SavedViews.save(scene)
    assert install_reader_layout(layout, "ABC")
    layout.SetViewArrangement(READER_LAYOUT_ID)  # what layoutManager.setLayout does
    assert views(scene) == {"Red": ("Axial", "A"), "Yellow": ("Axial", "B"), "Green": ("Axial", "C")}
    show_blinded(scene, [v.GetID() for v in volumes])
    layout.SetViewArrangement(layout.SlicerLayoutConventionalView)
    assert views(scene)["Yellow"] == ("Axial", "B")  # the conventional layout does not relabel them ...
    saved.restore(scene)  # ... so the module restores them
    assert views(scene) == conventional
    assert [red.GetSliceToRAS().GetElement(r, c) for r in range(4) for c in range(4)] == red_matrix
    assert red.GetDefaultOrientation() == "Axial"
    assert composites["Red"].GetBackgroundVolumeID() == volumes[0].GetID()
    assert composites["Yellow"].GetBackgroundVolumeID() is None and not composites["Yellow"].GetLinkedControl()
    scene.RemoveNode(volumes[0])  # a volume gone by the end of the study is not shown again
    layout.SetViewArrangement(READER_LAYOUT_ID)
    show_blinded(scene, [v.GetID() for v in volumes[1:]])
    saved.restore(scene)
    assert composites["Red"].GetBackgroundVolumeID() is None
    assert not install_reader_layout(None)  # no main window: no layout, nothing to register


# -- torch only with consent; the module's sample data -------------------------------------------------------
def test_torch_is_installed_only_with_consent():
    asked, installed = [], []
    assert ensure_torch(lambda message: asked.append(message) or False, lambda: installed.append(1))
    assert asked == [] and installed == []  # torch present: nothing asked
    assert not ensure_torch(
        lambda message: asked.append(message) or False, lambda: installed.append(1), module="no_such_module_xyz"
    )
    assert len(asked) == 1 and "PyTorch" in asked[0] and installed == []
    with pytest.raises(InputError, match="could not be installed"):
        ensure_torch(lambda message: True, lambda: installed.append(1), module="no_such_module_xyz")
    assert installed == [1]


def test_module_sample_file_matches_its_registered_checksum(scene):
    path = MODULE_SAMPLE_DIR / MODULE_SAMPLE_FILE
    assert sha256_file(path) == MODULE_SAMPLE_SHA256 and module_sample_path() == path
    node = read_volume(scene, path)
    array = arrayFromVolume(node)
    assert array.ndim == 3 and array.shape[0] == 8 and array.max() > 1000
    spacing = geometry_of(node).spacing
    assert spacing == pytest.approx((1.0, 1.0, 1.0))


@pytest.mark.slow
def test_make_demo_reconstruction_outputs(tmp_path, run_cli):
    head = tmp_path / "head"
    assert (
        run_cli(
            "fastmrrecon", "sample-data", str(head), "--slices", "4", "--source", "mni152", "--coils", "4"
        ).returncode
        == 0
    )
    result = run_cli("fastmrrecon", "demo", str(head), str(tmp_path / "reconstruction"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "reconstruction"
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["contrasts"]) == {"T1w", "T2w", "PD", "FLAIR"}
    for contrast in metrics["contrasts"].values():
        assert set(contrast) == {"undersampled", "DNN"} and 10 < contrast["DNN"]["psnr_db"] < 60
    for contrast in ("T1w", "T2w", "PD", "FLAIR"):
        assert (out / f"head_{contrast}_DNN.nrrd").is_file()
    with open(out / "roi_table.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["volume"].split()[-1] for row in rows] == ["full", "undersampled", "DNN"]
    assert all(float(row["background SD"]) > 0 for row in rows)
    with ReaderStudy.open(out / "reader_study.sqlite") as study:
        assert study.readers() == ["scripted reader 1", "scripted reader 2"]
        assert all(study.next_case(reader) is None for reader in study.readers())
    with open(out / "reader_summary.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 9
    for name in ("side_by_side.png", "reader_summary.png"):
        assert (out / name).stat().st_size > 5000
    empty = run_cli("fastmrrecon", "demo", str(tmp_path / "nothing"), str(tmp_path / "o"))
    assert empty.returncode == 2 and "sample-data" in empty.stderr


def test_what_the_modules_import_at_load_time_does_not_import_torch():
    """Slicer loads the modules before torch may be installed (PyTorchUtils installs it on request)."""
    import subprocess
    import sys

    modules = [
        "FastMRICommon.device",
        "FastMRICommon.settings",
        "FastMRICommon.reload",
        "FastMRReconLib.volume_logic",
        "FastMRReconLib.study.roi_table",
        "FastMRReconLib.study.reader_study",
        "FastMRReconLib.study.reader_session",
        "FastMRReconLib.study.reader_views",
        "FastMRReconLib.study.reader_panel",
        "FastMRReconLib.self_test",
        "FastMRReconLib.model.settings",
        "FastMRReconLib.metrics",
        "FastMRReconLib.sample_data",
        "FastMRReconLib.kspace.simulate",
        "FastMRReconLib.kspace.masks",
        "IVIMEstimatorLib.map_logic",
        "IVIMEstimatorLib.fits.methods",
        "IVIMEstimatorLib.fits.priors",
        "IVIMEstimatorLib.fits.protocol_models",
        "IVIMEstimatorLib.series_logic",
    ]
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_the_module_widget_works_without_a_main_window():
    """Slicer's generic module tests create the widget with --no-main-window, where slicer.app.layoutManager()
    is None: setting the widget up must not use it, and every use of it must handle None."""
    import ast

    tree = ast.parse((Path(__file__).resolve().parents[1] / "FastMRRecon" / "FastMRRecon.py").read_text())
    functions = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}

    def calls(function, name):
        return [
            node
            for node in ast.walk(function)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == name
        ]

    for name in ("setup", "initializeParameterNode", "setParameterNode", "_checkCanApply"):
        assert not calls(functions[name], "layoutManager"), name
    # the reader-study section (made in setup) and the self-test scenario, in the Lib
    lib = Path(__file__).resolve().parents[1] / "FastMRRecon" / "FastMRReconLib"
    for path in (lib / "study" / "reader_panel.py", lib / "self_test.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name != "layout_manager":  # SlicerGui's accessor
                functions[f"{path.stem}.{node.name}"] = node
    for name in ("reader_panel.__init__", "reader_panel.update", "reader_panel.close"):
        assert not calls(functions[name], "layout_manager"), name
    for name, function in functions.items():
        if calls(function, "layoutManager") or calls(function, "layout_manager"):
            checked = [
                node
                for node in ast.walk(function)
                if isinstance(node, ast.Compare)
                and any(isinstance(c, ast.Constant) and c.value is None for c in node.comparators)
            ]
            assert checked, f"{name} uses slicer.app.layoutManager() without checking it for None"


# -- Reload: the module file re-imports its Lib afresh -------------------------------------------------------
def test_forget_packages_removes_a_package_and_its_submodules_only(tmp_path, monkeypatch):
    import importlib
    import sys

    from FastMRICommon.reload import forget_packages

    for package in ("demo_lib", "demo_lib_extra"):
        (tmp_path / package / "inner").mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("VERSION = 1\n")
        (tmp_path / package / "inner" / "__init__.py").write_text("")
        (tmp_path / package / "inner" / "part.py").write_text(
            "from demo_lib import VERSION as SEEN\n" if package == "demo_lib" else "SEEN = 0\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    part = importlib.import_module("demo_lib.inner.part")
    importlib.import_module("demo_lib_extra.inner.part")
    assert part.SEEN == 1
    try:
        (tmp_path / "demo_lib" / "__init__.py").write_text("VERSION = 2\n")
        assert importlib.import_module("demo_lib.inner.part").SEEN == 1  # answered from sys.modules
        assert forget_packages(["demo_lib"]) == ["demo_lib", "demo_lib.inner", "demo_lib.inner.part"]
        assert "demo_lib_extra.inner.part" in sys.modules  # a name sharing the prefix is another package
        importlib.invalidate_caches()
        assert importlib.import_module("demo_lib.inner.part").SEEN == 2  # read again, in dependency order
        assert part.SEEN == 1  # what was imported before keeps working
        assert forget_packages(["no_such_package"]) == []
    finally:
        forget_packages(["demo_lib", "demo_lib_extra"])


def test_the_module_widget_reload_forgets_its_lib_and_not_the_shared_package():
    """onReload (Slicer v5.10.0 re-executes only the module file, audit 5): FastMRReconLib is forgotten, then
    the base class reloads; FastMRICommon, shared with IVIMEstimator, is kept."""
    import ast

    tree = ast.parse((Path(__file__).resolve().parents[1] / "FastMRRecon" / "FastMRRecon.py").read_text())
    widget = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "FastMRReconWidget")
    method = next(node for node in widget.body if isinstance(node, ast.FunctionDef) and node.name == "onReload")
    calls = [
        ast.unparse(statement.value)
        for statement in method.body
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
    ]
    assert calls == ["forget_packages(['FastMRReconLib'])", "ScriptedLoadableModuleWidget.onReload(self)"]


# -- the module file stays thin ------------------------------------------------------------------------------------
MODULE_FILE = Path(__file__).resolve().parents[1] / "FastMRRecon" / "FastMRRecon.py"


def test_the_module_file_is_at_most_300_lines():
    """Slicer's scripted-module template shape: everything real is in FastMRReconLib."""
    assert len(MODULE_FILE.read_text().splitlines()) <= 300


def test_the_reader_panel_uses_widgets_the_ui_defines():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from consistency import ui_names

    from FastMRReconLib.study import reader_panel

    source = Path(reader_panel.__file__).read_text()
    import re

    assert set(re.findall(r"\bui\.(\w+)", source)) <= set(reader_panel.WIDGETS)
    ui_file = MODULE_FILE.parent / "Resources" / "UI" / "FastMRRecon.ui"
    assert set(reader_panel.WIDGETS) <= ui_names(ui_file)


# -- the reader study's state and views on real MRML ---------------------------------------------------------------
def reader_scene(scene):
    """``scene`` as Slicer sets it up for the reader views: the layout logic (layout node, slice nodes) and a
    slice-composite node per view (Slicer's slice logic makes them)."""
    logic = slicer_layout(scene)
    for name in ("Red", "Yellow", "Green"):
        scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode").SetLayoutName(name)
    return logic


class Recorder:
    """A stand-in for the Qt objects a ReaderLayout touches (slice controllers, corner annotations, views)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args)) or self


class LayoutManagerStandIn:
    """Slicer's layout manager as ReaderLayout and the reader panel use it: its layout logic, its slice
    widgets (each a Recorder)."""

    def __init__(self, logic):
        self.logic, self.widgets = logic, {name: Recorder() for name in VIEW_NAMES}

    def layoutLogic(self):
        return self.logic

    def sliceWidget(self, name):
        return self.widgets.get(name)


def test_reader_session_creates_reads_scores_and_summarises_a_study(scene, tmp_path):
    from FastMRReconLib.study.reader_session import STUDY_METHODS, ReaderSession

    reader_scene(scene)
    volumes = [new_volume_node(scene, phantom(seed=s) * (1 + s), GEOMETRY, m) for s, m in enumerate(STUDY_METHODS)]
    session = ReaderSession(scene)
    for bad in ([volumes[0], volumes[0], volumes[1]], [volumes[0], None, volumes[1]], volumes[:2]):
        with pytest.raises(InputError, match="select 3 different volumes: full, undersampled, DNN"):
            session.add_case(bad)
    with pytest.raises(InputError, match="add at least one case"):
        session.create(tmp_path / "study.sqlite")
    assert session.add_case(volumes) == 1 and session.add_case(volumes[::-1]) == 2
    with pytest.raises(InputError, match="choose a study file name"):
        session.create("")
    path = session.create(tmp_path / "knee study.sqlite", seed=3)
    assert path.is_file() and session.pending == []
    assert session.state("ann") == session.state("") and not session.state("ann").can_finish  # nothing open
    with pytest.raises(InputError, match="no study is open"):
        session.show_next_case("ann")

    study = session.open(path)
    assert study.name == "knee study" and len(study.cases) == 2
    with pytest.raises(InputError, match="reader's name"):
        session.show_next_case("  ")
    case = session.show_next_case("ann")
    shown = dict(session.case_nodes)
    assert case is not None and sorted(shown) == ["A", "B", "C"]
    assert all(scene.IsNodePresent(node) for node in shown.values())
    assert all(node.GetName() == f"{case} {label}" for label, node in shown.items())
    windows = {
        (node.GetDisplayNode().GetWindowLevelMin(), node.GetDisplayNode().GetWindowLevelMax())
        for node in shown.values()
    }
    assert len(windows) == 1  # one grey window: no version stands out
    composite = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    assert [composite.GetItemAsObject(i).GetBackgroundVolumeID() for i in range(3)] == [
        shown[label].GetID() for label in "ABC"
    ]
    state = session.state("ann")
    assert (state.case, state.reading, state.can_advance, state.remaining, state.total) == (case, True, False, 2, 2)
    for label, score in zip("ABC", (5, 3, 4)):
        session.score("ann", label, score)
    assert session.state("ann").given == {"A": 5, "B": 3, "C": 4} and session.state("ann").can_advance
    second = session.show_next_case("ann")
    assert second not in (None, case) and not any(scene.IsNodePresent(node) for node in shown.values())
    for label in "ABC":
        session.score("ann", label, 2)
    assert session.show_next_case("ann") is None and session.case_nodes == {}
    state = session.state("ann")
    assert (state.reading, state.can_finish, state.total) == (False, True, 2)
    with pytest.raises(InputError, match="no case is shown"):
        session.score("ann", "A", 3)
    table, chart = session.finish()
    assert table.GetNumberOfRows() == 2 * len(STUDY_METHODS) and chart.GetNumberOfPlotSeriesNodes() == 2
    assert session.study is None and session.state("ann") == session.state("")

    empty = ReaderSession(scene)  # a study without scores stays open when Finish cannot summarise it
    empty.add_case(volumes)
    empty.open(empty.create(tmp_path / "empty.sqlite"))
    with pytest.raises(InputError, match="no scores yet"):
        empty.finish()
    assert empty.study is not None
    empty.close()


def test_reader_layout_enters_and_restores_the_views_and_what_only_the_gui_has(scene):
    from FastMRReconLib.study.reader_views import ReaderLayout, set_view_arrangement

    logic = reader_scene(scene)
    layout_node = logic.GetLayoutNode()
    layout_node.SetViewArrangement(layout_node.SlicerLayoutFourUpView)
    conventional = views(scene)
    annotations = SimpleNamespace(sliceViewAnnotationsEnabled=True, updates=0)
    annotations.updateSliceViewFromGUI = lambda: setattr(annotations, "updates", annotations.updates + 1)
    manager = LayoutManagerStandIn(logic)
    with pytest.raises(InputError, match="main window"):
        ReaderLayout(scene, None).enter()
    layout = ReaderLayout(scene, layout_node, manager, annotations)
    layout.exit()  # not entered: nothing to restore
    layout.enter()
    layout.enter()  # entered already: nothing changes
    assert layout.entered and layout_node.GetViewArrangement() == READER_LAYOUT_ID
    assert views(scene) == {"Red": ("Axial", "A"), "Yellow": ("Axial", "B"), "Green": ("Axial", "C")}
    assert annotations.sliceViewAnnotationsEnabled is False and annotations.updates == 1
    for widget in manager.widgets.values():
        assert ("setVisible", False) in widget.calls and ("ClearAllTexts",) in widget.calls
    layout.exit()
    assert not layout.entered and layout_node.GetViewArrangement() == layout_node.SlicerLayoutFourUpView
    assert views(scene) == conventional
    assert annotations.sliceViewAnnotationsEnabled is True and annotations.updates == 2
    assert all(widget.calls[-1] == ("setVisible", True) for widget in manager.widgets.values())
    set_view_arrangement(layout_node, 987654)  # no such layout: the conventional one, as Slicer's manager does
    assert layout_node.GetViewArrangement() == layout_node.SlicerLayoutConventionalView


class WidgetStandIn(SimpleNamespace):
    """A Qt widget as the reader panel uses it: properties are attributes, ``connect`` records the slot."""

    def __init__(self, **properties):
        super().__init__(**{"text": "", "enabled": True, "currentIndex": 0, "items": [], "slots": {}, **properties})

    def connect(self, signal, slot):
        self.slots[signal] = slot

    def addItems(self, items):
        self.items.extend(items)

    @staticmethod
    def emit(slot, *arguments):
        """Call ``slot`` with as many of the signal's arguments as it takes, as PythonQt does."""
        import inspect

        return slot(*arguments[: len(inspect.signature(slot).parameters)])

    def click(self):
        self.emit(self.slots["clicked(bool)"], True)

    def choose(self, index):
        self.currentIndex = index
        self.emit(self.slots["activated(int)"], index)


class GuiStandIn:
    """What ReaderStudyPanel takes from Slicer (SlicerGui): errors propagate to the test."""

    def __init__(self, manager=None):
        self.manager, self.charts, self.resets = manager, [], 0

    def layout_manager(self):
        return self.manager

    def annotations(self):
        return None

    def error_display(self, message):
        import contextlib

        return contextlib.nullcontext()

    def reset_views(self):
        self.resets += 1

    def show_chart(self, chart):
        self.charts.append(chart)


def test_the_reader_study_section_of_the_gui_on_real_mrml(scene, tmp_path):
    """ReaderStudyPanel with stand-in widgets: the clicks a reader makes, and what the section then shows."""
    from FastMRReconLib.study.reader_panel import WIDGETS, ReaderStudyPanel

    logic = reader_scene(scene)
    volumes = [new_volume_node(scene, phantom(seed=s), GEOMETRY, m) for s, m in enumerate(METHODS)]
    ui = SimpleNamespace(**{name: WidgetStandIn() for name in WIDGETS})
    for name, node in zip(("studyFullSelector", "studyUndersampledSelector", "studyDnnSelector"), volumes):
        getattr(ui, name).currentNode = lambda node=node: node
    ui.studyPathLineEdit.currentPath = str(tmp_path / "study.sqlite")
    reader = SimpleNamespace(name="ann")
    gui = GuiStandIn()
    panel = ReaderStudyPanel(ui, scene, lambda: reader.name, gui)
    assert ui.scoreAComboBox.items[0] == "not scored" and len(ui.scoreAComboBox.items) == 6
    assert ui.scoreAComboBox.items[1].startswith("5 ") and ui.scoreAComboBox.items[5].startswith("1 ")
    assert not ui.scoreBComboBox.enabled and not ui.nextCaseButton.enabled and not ui.finishReadingButton.enabled

    ui.studyDnnSelector.currentNode = lambda: volumes[0]
    with pytest.raises(InputError, match="different volumes"):
        ui.addCaseButton.click()
    ui.studyDnnSelector.currentNode = lambda: volumes[2]
    ui.addCaseButton.click()
    assert ui.pendingCasesLabel.text == "1 case(s) ready" and ui.createStudyButton.enabled
    ui.createStudyButton.click()
    assert (tmp_path / "study.sqlite").is_file() and not ui.createStudyButton.enabled
    assert ui.pendingCasesLabel.text == f"Created {tmp_path / 'study.sqlite'}"

    with pytest.raises(InputError, match="needs Slicer's main window"):  # --no-main-window
        ui.startReadingButton.click()
    gui.manager = LayoutManagerStandIn(logic)
    arrangement = logic.GetLayoutNode().GetViewArrangement()
    ui.startReadingButton.click()
    assert logic.GetLayoutNode().GetViewArrangement() == READER_LAYOUT_ID and gui.resets == 1
    assert ui.caseLabel.text == "case 001: 1 of 1 cases left to score" and ui.scoreAComboBox.enabled
    assert sorted(panel.session.case_nodes) == ["A", "B", "C"]
    ui.scoreAComboBox.choose(1)  # 5 excellent
    ui.scoreBComboBox.choose(0)  # "not scored": nothing recorded
    assert ui.readerStatusLabel.text == "Scores saved: 1 of 3" and not ui.nextCaseButton.enabled
    ui.scoreBComboBox.choose(3)
    ui.scoreCComboBox.choose(5)
    assert ui.readerStatusLabel.text == "Scores saved: 3 of 3" and ui.nextCaseButton.enabled
    assert panel.session.study.reader_scores("ann", "case 001") == {"A": 5, "B": 3, "C": 1}
    shown = list(panel.session.case_nodes.values())
    ui.nextCaseButton.click()
    assert ui.caseLabel.text == "All 1 cases scored. Finish to see the summary."
    assert not ui.scoreAComboBox.enabled and ui.scoreAComboBox.currentIndex == 0 and ui.finishReadingButton.enabled
    assert not any(scene.IsNodePresent(node) for node in shown)
    ui.finishReadingButton.click()
    assert len(gui.charts) == 1 and gui.charts[0].IsA("vtkMRMLPlotChartNode")
    assert logic.GetLayoutNode().GetViewArrangement() == arrangement
    assert views(scene)["Yellow"] == ("Sagittal", "Y") and not ui.finishReadingButton.enabled

    reader.name = "bob"  # a second reader, then the scene closes while reading
    ui.startReadingButton.click()
    assert ui.caseLabel.text == "case 001: 1 of 1 cases left to score"
    panel.close()
    assert panel.session.study is None and panel.layout is None and views(scene)["Green"] == ("Coronal", "G")


def test_suggested_roi_points_follow_the_reference_and_its_transform(scene):
    from FastMRReconLib.study.roi_table import homogeneous_roi_points, noisy_air_point, suggested_roi_points

    image = phantom(seed=4)
    truth = phantom(seed=4, noise=0.0)
    node = new_volume_node(scene, image, GEOMETRY, "moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(1, 3, -7.0)
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    markups = suggested_roi_points(scene, node, [node], 4, truth=truth)
    expected = [*homogeneous_roi_points(truth, 4), noisy_air_point(truth, [image], 4)]
    assert markups.GetNumberOfControlPoints() == 3 and markups.GetNthControlPointLabel(2) == "background"
    assert compare_volumes([node], markups)[0].stats == roi_statistics(image, *expected)


# -- the module's self-test scenario, outside Slicer -----------------------------------------------------------------
class ModuleLogicStandIn(ReconModuleLogic):
    """FastMRReconLogic as the module file makes it (ReconModuleLogic + the parameter node; the module needs
    Slicer's GUI), on a parameter object holding the same fields and defaults as the module's parameter node."""

    def __init__(self):
        from FastMRICommon.settings import parameter_annotations
        from FastMRReconLib.kspace.simulate import SimulationSettings
        from FastMRReconLib.metrics import RoiSettings
        from FastMRReconLib.model.settings import ReconstructionSettings

        super().__init__()
        _, defaults = parameter_annotations(
            (ReconstructionSettings, SimulationSettings, RoiSettings),
            lambda *range_: None,
            lambda choices: None,
            skip=("precision",),
        )
        self.parameters = SimpleNamespace(
            **{**defaults, "device": "cpu"},
            reconInputVolume=None,
            reconOutputVolume=None,
            inputVolume=None,
            roiPoints=None,
            roiReference=None,
            roiTable=None,
            readerName="",
        )

    def getParameterNode(self):
        return self.parameters


@pytest.mark.parametrize("main_window", [True, False])
def test_the_self_test_scenario_runs_on_the_sample(scene, main_window):
    import unittest

    from FastMRReconLib.self_test import run_module_scenario

    logic = reader_scene(scene)
    full = read_volume(scene, module_sample_path(), "FastMRReconHeadT2w")
    app = SimpleNamespace(layoutManager=lambda: LayoutManagerStandIn(logic) if main_window else None)
    run_module_scenario(unittest.TestCase(), ModuleLogicStandIn(), full, app)
    assert logic.GetLayoutNode().GetViewArrangement() != READER_LAYOUT_ID
