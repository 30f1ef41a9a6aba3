"""IVIM maps on MRML (what the module's *Estimate*, voxel inspector, statistics and export call).

``estimate_maps`` takes the series as Slicer holds it (sequence, multi-volume, DWI node or a list of scalar
volumes; ``series_logic.load_series``), optionally a mask (label map volume, or segmentation node whose
segments are merged; both resampled to the series grid by Slicer's segmentation logic) or an automatic mask,
optionally motion correction (``motion.motion_correct``), and one of the five methods (``fits.model.IvimModel``,
built once per protocol and method and kept in an ``IvimModels``) on all b-values or the accelerated subset
(b = 0, 20, 50, 150, 300, 500 s/mm²). Result maps, in display units: f (fraction), D and D* (10⁻³ mm²/s), S0
(signal units), the SDs of f, D and D* (the Bayes method's posterior SDs, the networks' SD maps), and the fit
residual (RMS over b of (S - fitted S) / S0, a fraction of S0). Voxels outside the mask or without a valid
fit are NaN in the arrays and 0 in the volume nodes (shown transparent below the colour window). The noise SD
is measured from the series' background (before motion correction), else from the fit residuals
(``IvimFit.noise``; ``fit_notes`` says which, with the fit's warnings). Errors are ``InputError``, one line.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from FastMRICommon.device import DEVICE_CHOICES
from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback, raise_if_cancelled, report
from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.gui_binding import placing_point_list
from FastMRICommon.mrml_nodes import geometry_of, new_table_node, new_volume_node
from FastMRICommon.settings import check_settings, setting
from FastMRICommon.volume_files import write_volume
from IVIMEstimatorLib.diffusion_series import DiffusionSeries
from IVIMEstimatorLib.fits.methods import METHODS
from IVIMEstimatorLib.fits.model import IvimFit, IvimModel
from IVIMEstimatorLib.fits.priors import DEFAULT_PRIOR, PRIORS
from IVIMEstimatorLib.motion import MotionConfig, motion_correct
from IVIMEstimatorLib.noise import background_noise_sd
from IVIMEstimatorLib.series_logic import load_series, require_bvalues
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES

BVALUE_SETS = ("all", "accelerated")


@dataclass(frozen=True)
class MapSpec:
    """How a map is shown: node name suffix, unit, factor from fit units, colour table, default window."""

    label: str
    unit: str
    factor: float
    colour: str
    window: tuple[float, float]


#: Display of every map ``fit`` can return, plus the residual.
MAP_SPECS = {
    "f": MapSpec("f", "fraction", 1.0, "vtkMRMLColorTableNodeFileViridis.txt", (0.0, 0.6)),
    "D": MapSpec("D", "10^-3 mm2/s", 1e3, "vtkMRMLColorTableNodeFilePlasma.txt", (0.0, 3.0)),
    "Dstar": MapSpec("D*", "10^-3 mm2/s", 1e3, "vtkMRMLColorTableNodeFileInferno.txt", (0.0, 100.0)),
    "S0": MapSpec("S0", "signal", 1.0, "vtkMRMLColorTableNodeGrey", (0.0, 0.0)),
    "f_sd": MapSpec("f SD", "fraction", 1.0, "vtkMRMLColorTableNodeFileMagma.txt", (0.0, 0.2)),
    "D_sd": MapSpec("D SD", "10^-3 mm2/s", 1e3, "vtkMRMLColorTableNodeFileMagma.txt", (0.0, 0.5)),
    "Dstar_sd": MapSpec("D* SD", "10^-3 mm2/s", 1e3, "vtkMRMLColorTableNodeFileMagma.txt", (0.0, 30.0)),
    "residual": MapSpec("residual", "fraction of S0", 1.0, "vtkMRMLColorTableNodeFileMagma.txt", (0.0, 0.1)),
}


@dataclass(frozen=True)
class EstimateConfig:
    """What *Estimate* and ``ivimestimator fit`` do: the fields declared with ``setting`` are the module's
    parameter node fields (camelCase: ``bvalueSet``, ``autoMask``, ...) and ``fit``'s options, with their defaults,
    choices and help (``FastMRICommon.settings``); making an instance checks them (``InputError`` naming the
    setting). ``model``: a network model file (None: the shipped network for the protocol); ``motion``: the
    registration settings of motion correction."""

    method: str = setting(
        "scdnn",
        "estimator: the scdnn, mlp and ivimnet networks, segmented least squares (nlls) "
        "or the Bayes posterior mean with SD maps (bayes)",
        choices=METHODS,
    )
    bvalue_set: str = setting(
        "all",
        "b-values fitted: all of the series', or the accelerated subset b = "
        + ", ".join(f"{b:g}" for b in ACCELERATED_BVALUES)
        + " s/mm²",
        choices=BVALUE_SETS,
    )
    motion_correction: bool = setting(
        False,
        "register the volumes to a mean template before fitting (rigid + affine; see `register`)",
        option="--motion-correct",
    )
    auto_mask: bool = setting(
        True,
        "when no mask is given, fit only the object: voxels of the lowest-b image above "
        "a tenth of its 99th percentile (off: every voxel, air included)",
    )
    prior: str = setting(
        DEFAULT_PRIOR,
        "parameter prior of the bayes method and of a network trained for the "
        "protocol: placenta by default, the module's use case and the prior of the shipped placenta "
        "networks, so Bayes and network maps assume the same tissue; generic for other tissue",
        choices=tuple(PRIORS),
    )
    device: str = setting("auto", "torch device: auto = CUDA when present, else the CPU", choices=DEVICE_CHOICES)
    model: str | None = None
    motion: MotionConfig = field(default_factory=MotionConfig)

    def __post_init__(self) -> None:
        check_settings(self)


#: Formats in which maps are written: name -> file suffix.
EXPORT_FORMATS = {"nrrd": ".nrrd", "nifti": ".nii.gz"}


@dataclass(frozen=True)
class ExportSettings:
    """How maps are written: the module's *Export* (parameter ``exportFormat``) and ``ivimestimator fit``
    (``--format``, which also takes the suffix)."""

    file_format: str = setting(
        "nrrd",
        "map file format, also given as its suffix .nrrd or .nii.gz",
        choices=tuple(EXPORT_FORMATS),
        parameter="exportFormat",
        option="--format",
    )

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class MapResult:
    """Maps in display units (``MAP_SPECS``; NaN outside the mask), the series actually fitted (after b-value
    selection and motion correction), the mask used (None: all voxels), the fit itself (fit units: D and D*
    in mm²/s; its ``predict`` gives the fitted curves), and the grid."""

    maps: dict[str, np.ndarray]
    series: DiffusionSeries
    mask: np.ndarray | None
    fit: IvimFit

    @property
    def geometry(self) -> VolumeGeometry:
        return self.series.geometry


def select_bvalues(series: DiffusionSeries, bvalue_set: str) -> DiffusionSeries:
    """All volumes, or those at the accelerated protocol's b-values (each must be present)."""
    if bvalue_set not in BVALUE_SETS:
        raise InputError(f"unknown b-value set {bvalue_set!r}; choose one of {', '.join(BVALUE_SETS)}")
    b = require_bvalues(series)
    if bvalue_set == "all":
        return series
    keep = np.isin(b, ACCELERATED_BVALUES)
    missing = sorted(set(ACCELERATED_BVALUES.tolist()) - set(b[keep].tolist()))
    if missing:
        raise InputError(
            f"the accelerated subset needs b = {', '.join(f'{v:g}' for v in missing)} s/mm², "
            "which the series does not have; use all b-values"
        )
    return DiffusionSeries(series.volumes[keep], b[keep], series.geometry)


def mask_from_node(node: Any, reference: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """Boolean mask on the series grid (``shape``; ``reference`` a volume node on that grid) from a label map
    or scalar volume on the same grid, or from a segmentation node (all segments merged, resampled to the
    grid by Slicer's segmentation logic)."""
    import slicer

    if node.IsA("vtkMRMLSegmentationNode"):
        import vtk

        if node.GetSegmentation().GetNumberOfSegments() == 0:
            raise InputError(f"the segmentation {node.GetName()!r} has no segments")
        segment_ids = vtk.vtkStringArray()
        node.GetSegmentation().GetSegmentIDs(segment_ids)
        scene = node.GetScene()
        existing = {scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())}
        labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "IVIM mask (temporary)")
        try:
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                node, segment_ids, labels, reference
            ):
                raise InputError(f"the segmentation {node.GetName()!r} could not be resampled to the series grid")
            mask = slicer.util.arrayFromVolume(labels) > 0
        finally:  # remove the temporary label map and what came with it (display, colours); not the
            # scene's subject hierarchy, which Slicer creates once per scene
            added = [scene.GetNthNode(n) for n in range(scene.GetNumberOfNodes())]
            for helper in [n for n in added if n.GetID() not in existing and not n.IsA("vtkMRMLSubjectHierarchyNode")]:
                scene.RemoveNode(helper)
    elif node.IsA("vtkMRMLScalarVolumeNode"):
        if node.GetImageData() is None:
            raise InputError(f"the mask {node.GetName()!r} has no image data")
        mask = slicer.util.arrayFromVolume(node) > 0
        if mask.shape != shape or not geometry_of(node).matches(geometry_of(reference)):
            raise InputError(
                f"the mask {node.GetName()!r} is on another grid than the series: resample it to the "
                "series first (or use a segmentation, which is resampled automatically)"
            )
    else:
        raise InputError(f"{node.GetName()!r} is not a label map, scalar volume or segmentation")
    if not mask.any():
        raise InputError(f"the mask {node.GetName()!r} is empty")
    return mask


def automatic_mask(series: DiffusionSeries, fraction: float = 0.1) -> np.ndarray:
    """The object: voxels of the lowest-b mean image above ``fraction`` of its 99th percentile (well above
    the noise of air, below the darkest tissue), holes filled per slice, islands smaller than 1% of the
    largest removed."""
    b = require_bvalues(series)
    image = np.nan_to_num(series.volumes[b == b.min()].mean(axis=0))
    mask = image > fraction * np.percentile(image, 99)
    mask = np.stack([ndimage.binary_fill_holes(layer) for layer in mask])
    labels, count = ndimage.label(mask)
    if count:
        sizes = ndimage.sum(mask, labels, range(1, count + 1))
        mask = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.01 * sizes.max()))
    if not mask.any():
        raise InputError("the automatic mask is empty: the b = 0 image has no object above the background")
    return mask


def fit_residual(series: DiffusionSeries, fitted: IvimFit) -> np.ndarray:
    """RMS over the series' b-values of (S - fitted S) / S0 per voxel, float32 of the voxel shape (NaN where
    there is no fit); ``fitted`` holds maps of the series' grid."""
    b = require_bvalues(series)
    signals = np.moveaxis(series.volumes.astype(np.float64), 0, -1)
    S0 = np.asarray(fitted.S0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = np.sqrt(np.mean(((signals - fitted.predict(b)) / S0[..., None]) ** 2, axis=-1))
    return np.where(np.isfinite(residual), residual, np.nan).astype(np.float32)


class IvimModels:
    """The estimators built so far (``IvimModel``), one per acquired b-values, method, network file, prior and
    device, so that estimating again on the same protocol neither reads nor checks the network again. A model
    file is known by its path, size and modification time (a file replaced on disk is read again). At most
    ``capacity`` are kept; the oldest goes first."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._models: dict[tuple, IvimModel] = {}

    def get(self, bvalues: np.ndarray, config: EstimateConfig) -> IvimModel:
        """The ``IvimModel`` of ``config``'s method, model, prior and device for ``bvalues`` (s/mm², as
        acquired); built on first use (raises what ``IvimModel`` raises; nothing is kept then)."""
        model_file = None
        if config.model is not None:
            path = Path(config.model)
            stat = path.stat() if path.is_file() else None
            model_file = (str(path.resolve()), stat and stat.st_size, stat and stat.st_mtime_ns)
        key = (tuple(float(b) for b in bvalues), config.method, model_file, config.prior, config.device)
        if key not in self._models:
            model = IvimModel(bvalues, config.method, config.model, config.prior, config.device)
            while len(self._models) >= self.capacity:
                self._models.pop(next(iter(self._models)))
            self._models[key] = model
        return self._models[key]


def estimate_maps(
    source: Any,
    config: EstimateConfig = EstimateConfig(),
    bvalues_text: str = "",
    mask_node: Any = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    models: IvimModels | None = None,
) -> MapResult:
    """IVIM maps of the series held by ``source`` (module docstring); inputs are only read. ``models``: the
    estimators built by earlier calls, reused and added to (None: one is built for this call). The estimator
    is built before motion correction, so that a protocol without a network fails at once."""
    report(progress, 0.0, "reading the series")
    series = select_bvalues(load_series(source, bvalues_text), config.bvalue_set)
    estimator = (models if models is not None else IvimModels()).get(require_bvalues(series), config)
    noise = background_noise_sd(series.volumes)  # before motion correction, whose interpolation smooths noise
    shape = series.volumes.shape[1:]
    mask = None
    if mask_node is not None:
        mask = mask_from_node(mask_node, _reference_volume(source), shape)
    elif config.auto_mask:
        mask = automatic_mask(series)
    raise_if_cancelled(cancel)
    fit_start = 0.05
    if config.motion_correction:
        # registered on the whole field of view, as benchmarked (docs/benchmarks/registration.md); the mask
        # only selects the voxels to fit
        series = motion_correct(
            series,
            None,
            config.motion,
            cancel=cancel,
            progress=None if progress is None else lambda f, m: progress(0.05 + 0.75 * f, m),
        ).series
        fit_start = 0.8
    raise_if_cancelled(cancel)
    report(progress, fit_start, f"fitting ({config.method})")
    fit_progress = None if progress is None else lambda f, m: progress(fit_start + (0.95 - fit_start) * f, m)
    fitted = estimator.fit(
        np.moveaxis(series.volumes, 0, -1), mask, progress=fit_progress, cancel=cancel, noise_sd=noise
    )
    maps = fitted.maps() | {"residual": fit_residual(series, fitted)}
    maps = {key: (values * MAP_SPECS[key].factor).astype(np.float32) for key, values in maps.items()}
    report(progress, 1.0, "maps ready")
    return MapResult(maps, series, mask, fitted)


def fit_notes(fit: IvimFit) -> list[str]:
    """What the user should read beside the maps: the noise SD the fit used (``noise SD 12.5 (background)``)
    and the fit's warnings."""
    parts = [] if fit.noise is None else [f"noise SD {fit.noise.sd:.4g} ({fit.noise.source})"]
    return parts + list(fit.warnings)


def _reference_volume(source: Any) -> Any:
    """A volume node on the series grid (for resampling segmentations): the first volume of the series."""
    if isinstance(source, (list, tuple)):
        return source[0]
    if source.IsA("vtkMRMLSequenceNode"):
        return source.GetNthDataNode(0)
    return source


def map_name(base: str, key: str) -> str:
    spec = MAP_SPECS[key]
    return f"{base} {spec.label} [{spec.unit}]"


def map_nodes(scene: Any, result: MapResult, base_name: str) -> dict[str, Any]:
    """New scalar volumes ``"<base> f [fraction]"``, ``"<base> D [10^-3 mm2/s]"``, ... on the series grid,
    with their colour tables and windows (NaN stored as 0)."""
    nodes = {}
    for key, values in result.maps.items():
        spec = MAP_SPECS[key]
        node = new_volume_node(scene, np.nan_to_num(values, nan=0.0), result.geometry, map_name(base_name, key))
        display = node.GetDisplayNode()
        if display is not None:
            if scene.GetNodeByID(spec.colour) is not None:
                display.SetAndObserveColorNodeID(spec.colour)
            low, high = spec.window
            if high <= low:  # S0: its own range
                finite = values[np.isfinite(values)]
                low, high = (0.0, float(np.percentile(finite, 99.5))) if finite.size else (0.0, 1.0)
            display.AutoWindowLevelOff()
            display.SetWindowLevelMinMax(low, high)
        node.SetAttribute("IVIM.map", key)
        node.SetAttribute("IVIM.unit", spec.unit)
        nodes[key] = node
    return nodes


STAT_COLUMNS = ("parameter", "unit", "mean", "SD", "voxels")


def map_statistics(maps: dict[str, np.ndarray], region: np.ndarray | None = None) -> list[tuple]:
    """(parameter, unit, mean, SD, voxels) of each map over ``region`` (default: where fitted), NaN ignored."""
    rows = []
    for key, values in maps.items():
        inside = np.isfinite(values) if region is None else (np.asarray(region, bool) & np.isfinite(values))
        if not inside.any():
            raise InputError("the region holds no fitted voxel")
        selected = values[inside].astype(np.float64)
        rows.append(
            (
                MAP_SPECS[key].label,
                MAP_SPECS[key].unit,
                float(selected.mean()),
                float(selected.std(ddof=1)) if selected.size > 1 else 0.0,
                int(selected.size),
            )
        )
    return rows


def statistics_table_node(scene: Any, rows: Sequence[tuple], name: str = "IVIM statistics") -> Any:
    """A new table node with ``map_statistics`` rows (columns ``STAT_COLUMNS``)."""
    return new_table_node(scene, name, STAT_COLUMNS, rows)


@dataclass(frozen=True)
class VoxelFit:
    """One voxel: b-values (s/mm²), its signal / S0, the fitted curve on ``curve_b``, and its map values
    (display units, keys of ``MAP_SPECS``)."""

    ijk: tuple[int, int, int]
    bvalues: np.ndarray
    signal: np.ndarray
    curve_b: np.ndarray
    curve: np.ndarray
    values: dict[str, float]


def voxel_fit(result: MapResult, ijk: Sequence[int]) -> VoxelFit:
    """The measured and fitted signal of voxel ``ijk`` = (i, j, k) of ``result`` (the voxel inspector)."""
    i, j, k = (int(round(v)) for v in ijk)
    shape = result.series.volumes.shape[1:]
    if not (0 <= k < shape[0] and 0 <= j < shape[1] and 0 <= i < shape[2]):
        raise InputError(f"voxel (i={i}, j={j}, k={k}) is outside the series ({shape[2]} x {shape[1]} x {shape[0]})")
    values = {key: float(m[k, j, i]) for key, m in result.maps.items()}
    if not np.isfinite(values["f"]):
        raise InputError(f"voxel (i={i}, j={j}, k={k}) has no fit (outside the mask or invalid signal)")
    b = require_bvalues(result.series)
    fitted = result.fit[k, j, i]
    S0 = float(fitted.S0)
    curve_b = np.linspace(0.0, float(b.max()), 200)
    return VoxelFit((i, j, k), b, result.series.volumes[:, k, j, i] / S0, curve_b, fitted.predict(curve_b) / S0, values)


def voxel_chart_node(scene: Any, voxel: VoxelFit, name: str = "IVIM voxel") -> Any:
    """A new plot chart: the voxel's signal / S0 against b (points) and the fitted bi-exponential (line);
    reuses nothing, so every inspection is a new chart unless the caller removes the old one."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    values = voxel.values
    chart.SetTitle(
        f"voxel {voxel.ijk}: f {values['f']:.3f}, D {values['D']:.3f}, D* {values['Dstar']:.1f} (10^-3 mm2/s)"
    )
    chart.SetXAxisTitle("b (s/mm2)")
    chart.SetYAxisTitle("S / S0")
    for title, x, y, style in (
        ("measured", voxel.bvalues, voxel.signal, "scatter"),
        ("fitted", voxel.curve_b, voxel.curve, "line"),
    ):
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {title}")
        table = new_table_node(scene, f"{name} {title} table", ("b (s/mm2)", "S/S0"), list(zip(x, y)))
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName("b (s/mm2)")
        series.SetYColumnName("S/S0")
        series.SetPlotType(series.PlotTypeScatter)
        series.SetMarkerStyle(series.MarkerStyleCircle if style == "scatter" else series.MarkerStyleNone)
        series.SetLineStyle(series.LineStyleNone if style == "scatter" else series.LineStyleSolid)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


class VoxelPoint:
    """The voxel inspector's point: a one-point list (hidden from the Data module) that the module's place
    widget places into, and that the inspector follows when Slicer places into another list.

    Once the list holds its point, the next placement goes into a new list Slicer makes
    (``FastMRICommon.gui_binding.placing_point_list``): the inspector takes that list as its own (one point,
    hidden, named ``name``), tells ``on_list(node)`` (the place widget must show it), and removes the list it
    replaced once the new point is placed, so the views show one voxel point, the inspected one.
    ``on_placed(position)`` gets the point's world (RAS) position whenever it is placed or moved.

    It follows only between :meth:`ensure` and :meth:`close` (the module calls them on entering and leaving),
    so a point list the user starts elsewhere (Slicer's toolbar also makes a new list when the active one is
    full) is not taken while the module is hidden.
    """

    def __init__(
        self,
        scene: Any,
        on_placed: Callable[[tuple[float, float, float]], None],
        on_list: Callable[[Any], None],
        name: str = "IVIM voxel",
    ) -> None:
        self._scene, self._on_placed, self._on_list, self._name = scene, on_placed, on_list, name
        self.node: Any = None  # the list the inspector reads
        self._replaced: list[Any] = []  # lists it followed away from, removed once the new point is placed
        self._observed: list[tuple[Any, int]] = []  # (node, observer tag) of the list in use
        self._selection: Any = None
        self._selection_tag: int | None = None

    def ensure(self) -> Any:
        """Follow placements again and return the list in use (shown by the place widget); a new list when
        there is none in the scene (at first, or after the scene was closed)."""
        selection = self._scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
        if selection is not self._selection:
            self._unobserve_selection()
            if selection is not None:
                self._selection = selection
                self._selection_tag = selection.AddObserver(selection.ActivePlaceNodeIDChangedEvent, self._follow)
        if self.node is None or not self._scene.IsNodePresent(self.node):
            self._use(self._scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode"))
        elif not self._observed:
            self._use(self.node)
        return self.node

    def close(self) -> None:
        """Stop following placements and reporting the point (the list stays, for :meth:`ensure`)."""
        self._unobserve_node()
        self._unobserve_selection()

    def position(self) -> tuple[float, float, float] | None:
        """World (RAS) position of the placed point, or None before one is placed."""
        if self.node is None or self.node.GetNumberOfDefinedControlPoints() == 0:
            return None
        position = [0.0, 0.0, 0.0]
        self.node.GetNthControlPointPositionWorld(0, position)
        return position[0], position[1], position[2]

    def _use(self, node: Any) -> None:
        self._unobserve_node()
        node.SetName(self._name)
        node.SetMaximumNumberOfControlPoints(1)
        node.SetHideFromEditors(True)
        self.node = node
        self._observed = [
            (node, node.AddObserver(event, self._placed))
            for event in (node.PointPositionDefinedEvent, node.PointEndInteractionEvent)
        ]
        self._on_list(node)

    def _follow(self, caller: Any = None, event: Any = None) -> None:
        successor = placing_point_list(self._scene, self.node)
        if successor is not None:
            self._replaced.append(self.node)
            self._use(successor)

    def _placed(self, caller: Any = None, event: Any = None) -> None:
        position = self.position()
        if position is None:
            return
        for node in self._replaced:
            if self._scene.IsNodePresent(node):
                self._scene.RemoveNode(node)
        self._replaced = []
        self._on_placed(position)

    def _unobserve_node(self) -> None:
        for node, tag in self._observed:
            node.RemoveObserver(tag)
        self._observed = []

    def _unobserve_selection(self) -> None:
        if self._selection is not None and self._selection_tag is not None:
            self._selection.RemoveObserver(self._selection_tag)
        self._selection, self._selection_tag = None, None


def export_maps(
    nodes: dict[str, Any], folder: str | os.PathLike, file_format: str = ExportSettings.file_format
) -> list[Path]:
    """Write every map node to ``folder`` as ``<node name as a file name><suffix>`` (``file_format``: a key of
    ``EXPORT_FORMATS``), all or none of them (``staged_files``); refuses to overwrite existing files (nothing is
    written then)."""
    if file_format not in EXPORT_FORMATS:
        raise InputError(f"unknown format {file_format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if not nodes:
        raise InputError("there are no maps to export: estimate them first")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, not a folder")
    names = {key: _file_name(node.GetName()) + EXPORT_FORMATS[file_format] for key, node in nodes.items()}
    existing = [name for name in names.values() if (folder / name).exists()]
    if existing:
        raise InputError(f"{folder} already holds {', '.join(existing)}: choose an empty folder")
    with staged_files(folder) as staging:
        for key, name in names.items():
            write_volume(nodes[key], staging / name)
    return [folder / name for name in names.values()]


#: Prefix of the hidden folder in which ``staged_files`` writes.
STAGING_PREFIX = ".partial-"


@contextmanager
def staged_files(folder: Path, replace: Sequence[Path] = ()) -> Iterator[Path]:
    """Write a set of files all or nothing: yields a new hidden folder ``<folder>/.partial-*`` (``folder`` is
    created) to write them into. When the block completes, the files in ``replace`` (an earlier set) are
    deleted and the new ones renamed into ``folder`` (same file system: milliseconds); when it fails or is
    interrupted (Ctrl-C), the new files are deleted, ``replace`` stays, and a ``folder`` created here is
    removed. So ``folder`` holds the whole new set or none of it, never a mix with an earlier run's files."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    for old in replace:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink(missing_ok=True)
    for new in sorted(staging.iterdir()):
        os.replace(new, folder / new.name)
    staging.rmdir()


def _file_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in text.replace("*", "star").replace("^", ""))
    return "_".join(part for part in cleaned.split("_") if part)
