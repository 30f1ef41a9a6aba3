"""IVIM estimation in dipy's Model/Fit shape: ``IvimModel(bvalues, method, ...)`` is built once for an
acquisition and an estimator (it checks them, and loads the network or builds the Bayes grid once);
``.fit(signals, mask)`` returns an ``IvimFit`` holding the maps, whose ``.predict(bvalues)`` gives the fitted
signal curves (``dipy.reconst.ivim.IvimModel(gtab).fit(data).predict(gtab)`` has the same shape).

Signal model (intravoxel incoherent motion: Le Bihan D. et al., Radiology 168:497-505, 1988):
S(b) = S0 [(1 - f) exp(-b D) + f exp(-b D*)], b in s/mm², D and D* in mm²/s, f a fraction.

Methods (``methods.METHODS``):
- ``scdnn``: the sparse-coding deep network (``networks.ScdnnNet``, after the SC-DNN of Zheng T. et al., "A
  Model-driven Deep Learning Method Based on Sparse Coding to Accelerate IVIM Imaging in Fetal Brain",
  Proc. ISMRM 2021, abstract 1333), ``mlp`` (supervised MLP) and ``ivimnet`` (unsupervised physics-informed
  MLP, IVIM-NET style): networks trained for one protocol; S0 is the mean b = 0 signal. The shipped networks
  are noise-aware (trained over SNR 8-150 and told each voxel's SNR, S0 / the noise SD) and give SD maps of
  f, D and D* (``networks.IvimNetwork``).
- ``nlls``: segmented, then full bounded least squares with a BIC choice of the mono-exponential model
  (``nlls``).
- ``bayes``: posterior mean and SD on a parameter grid under a named prior (``bayes``, ``priors``); Bayesian
  IVIM estimation as in Orton M.R. et al., Magn. Reson. Med. 71:411-420, 2014 (there with a data-driven
  shrinkage prior, here a fixed prior).

Handling of imperfect input (documented and tested):
- b-values are sorted (signals permuted with them); signals repeated at the same b-value are averaged.
- A voxel with a non-finite signal, or with S(lowest b) <= 0, gets NaN in every map; so do voxels outside
  ``mask``.
- Errors (``InputError``): unknown method, prior or device; negative or non-finite b-values, fewer than 3
  distinct ones; no b = 0 for a network (they normalise by it); a network whose protocol does not match the
  b-values (the message names ``ivimestimator train``); at fit time a b-value count != signal count, a
  complex or non-numeric array, a mask of another shape or an empty one, no valid voxel. A damaged model
  file raises ``ModelFileError``.

Long fits: voxels are fitted in chunks of ``CHUNK_VOXELS`` (about 0.2 s for NLLS, 0.7 s for Bayes at the
speeds of docs/benchmarks/ivim.md); progress is reported and cancellation honoured between chunks, so a GUI
that processes its events in the progress callback keeps a working *Cancel*.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from FastMRICommon.device import DEVICE_CHOICES, select_device
from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback, raise_if_cancelled, report
from IVIMEstimatorLib.fits.bayes import BayesConfig, fit_bayes, make_grid
from IVIMEstimatorLib.fits.methods import METHOD_ARCHITECTURE, METHODS
from IVIMEstimatorLib.fits.network_models import (
    ModelSource,
    has_uncertainty,
    is_noise_aware,
    load_network,
    normalised_inputs,
    resolve_model,
)
from IVIMEstimatorLib.fits.nlls import NllsConfig, fit_nlls
from IVIMEstimatorLib.fits.priors import DEFAULT_PRIOR, get_prior
from IVIMEstimatorLib.noise import NoiseEstimate, residual_noise_sd
from IVIMEstimatorLib.signal_model import ivim_signal

#: Voxels fitted between two progress reports / cancel checks.
CHUNK_VOXELS = 2048
#: The maps an ``IvimFit`` can hold, in the order ``IvimFit.maps`` lists them.
MAP_KEYS = ("f", "D", "Dstar", "S0", "f_sd", "D_sd", "Dstar_sd")


#: Voxels whose fit residuals measure the noise when it is not given (``IvimModel.fit``).
NOISE_VOXELS = 2000
#: Median S(lowest b > 0) / S(0) over the voxels above which the b = 0 volume is taken to be scaled differently
#: from the others (IVIM signals decay with b; noise alone moves the median by far less).
B0_SCALE_LIMIT = 1.05
#: Voxels the b = 0 scale check needs.
B0_SCALE_VOXELS = 50

log = logging.getLogger("ivimestimator")


class IvimModel:
    """An IVIM estimator for one acquisition: ``bvalues`` (s/mm², one per signal of a voxel, in the order of
    the signals' last axis; repeats allowed), ``method`` (``METHODS``), the network ``model`` (None: the shipped
    one for these b-values; a model file path, read once; or a loaded ``ModelFile``), the Bayes ``prior``
    (``priors.PRIORS``; by default ``priors.DEFAULT_PRIOR``, the placenta) and the torch ``device`` ("auto",
    "cpu", "cuda"; NLLS runs on numpy).

    Everything the fits share is made here, once: the network is found, read, checked against the protocol
    and built; the Bayes grid is computed. Raises ``InputError`` / ``ModelFileError`` as the module docstring
    lists. Attributes: ``bvalues`` (sorted unique, s/mm², what is fitted), ``acquired_bvalues`` (as given),
    ``method``, ``prior`` (a ``Prior``), ``device``, ``model_file`` (the network's ``ModelFile``, or None).
    """

    def __init__(
        self,
        bvalues: Any,
        method: str = "scdnn",
        model: ModelSource = None,
        prior: str = DEFAULT_PRIOR,
        device: str = "auto",
    ) -> None:
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        acquired = np.asarray(bvalues, dtype=float).ravel()
        if not np.all(np.isfinite(acquired)) or np.any(acquired < 0):
            raise InputError("b-values must be finite and >= 0 s/mm²")
        unique = np.unique(acquired)
        if unique.size < 3:
            raise InputError(f"IVIM needs at least 3 distinct b-values, got {unique.size}")
        self.method, self.acquired_bvalues, self.bvalues = method, acquired, unique
        self.prior = get_prior(prior)
        if str(device).lower() not in DEVICE_CHOICES:
            raise InputError(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")
        self.device = "cpu" if method == "nlls" else select_device(device)
        self.model_file = None
        self.noise_aware = self.uncertainty = False
        if method in METHOD_ARCHITECTURE:
            if unique[0] != 0:
                raise InputError(f"method {method} normalises by the b = 0 signal, but the data have no b = 0")
            self.model_file = resolve_model(method, model, unique)
            self._network = load_network(self.model_file, self.device)
            self.noise_aware = is_noise_aware(self.model_file)
            self.uncertainty = has_uncertainty(self.model_file)
        elif method == "bayes":
            self._grid = make_grid(self.prior, unique, BayesConfig())

    def __repr__(self) -> str:
        return f"IvimModel(bvalues=[{', '.join(f'{b:g}' for b in self.bvalues)}], method={self.method!r})"

    def fit(
        self,
        signals: Any,
        mask: Any = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        chunk_voxels: int = CHUNK_VOXELS,
        noise_sd: float | NoiseEstimate | None = None,
    ) -> IvimFit:
        """Fit ``signals`` (real array ``(..., n_b)``, any S0 scale, the last axis in the order of the
        acquired b-values); returns an ``IvimFit`` whose maps have the voxel shape ``signals.shape[:-1]``.

        ``mask``: boolean, of the voxel shape (None: every voxel). ``progress(fraction, message)`` is called
        after every ``chunk_voxels`` fitted voxels and ``cancel()`` polled before each chunk (True raises
        ``Cancelled``; nothing is returned). The inputs are not modified. ``noise_sd`` (signal units, > 0) is
        the series' noise SD when known; None: measured from the fit residuals of up to ``NOISE_VOXELS`` voxels
        (``noise.residual_noise_sd``) when there are enough voxels and b-values, else left unknown; either way
        reported as ``IvimFit.noise``. A noise-aware network (``noise_aware``) is told each voxel's SNR, S0 /
        noise SD, so it needs the noise SD: when it is neither given nor measurable, ``InputError``. When the
        median SNR of the voxels lies outside the SNRs the network was trained on, the fit goes on and says so
        in ``IvimFit.warnings`` (and the log). A series whose b = 0 signal lies below the lowest b > 0 signal in
        most voxels (median ratio above ``B0_SCALE_LIMIT``: a b = 0 volume scaled differently from the others)
        is refused (``InputError``).
        """
        given = noise_sd.sd if isinstance(noise_sd, NoiseEstimate) else noise_sd
        if given is not None and not (np.isfinite(given) and given > 0):
            raise InputError(f"the noise SD must be a positive number, got {given}")
        if chunk_voxels < 1:
            raise InputError(f"chunk_voxels must be >= 1, got {chunk_voxels}")
        signals = np.asarray(signals)
        if np.iscomplexobj(signals) or signals.ndim < 1 or signals.dtype.kind not in "fiu":
            raise InputError("signals must be a real array of shape (..., n_b)")
        if signals.shape[-1] != self.acquired_bvalues.size:
            raise InputError(f"{self.acquired_bvalues.size} b-values given for {signals.shape[-1]} signals per voxel")
        spatial = signals.shape[:-1]
        flat = self._per_bvalue(signals.reshape(-1, signals.shape[-1]).astype(np.float64))
        selected = np.ones(flat.shape[0], dtype=bool)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != spatial:
                raise InputError(f"mask shape {mask.shape} differs from the image shape {spatial}")
            selected = mask.reshape(-1).astype(bool)
            if not selected.any():
                raise InputError("the mask is empty")
        reference = flat[:, 0]  # S(b=0), or S at the lowest b for nlls/bayes without b = 0
        valid = selected & np.all(np.isfinite(flat), axis=1) & (reference > 0)
        if not valid.any():
            raise InputError("no valid voxel: every selected voxel has a non-finite signal or S(b=0) <= 0")
        measured = flat[valid]
        self._check_b0_scale(measured)
        y = measured / reference[valid, None]
        noise, reason = self._noise(measured, noise_sd)
        if self.noise_aware and noise is None:
            raise InputError(f"the {self.method} network needs the noise SD of the signals: {reason}")
        warnings = self._snr_warnings(reference[valid], noise)
        parts, total = [], len(y)
        for start in range(0, total, chunk_voxels):
            raise_if_cancelled(cancel)
            stop = min(start + chunk_voxels, total)
            parts.append(self._fit_chunk(measured[start:stop], y[start:stop], noise))
            report(progress, stop / total, f"fitted {stop:,} of {total:,} voxels ({self.method})")
        maps = {}
        for key in parts[0]:
            full = np.full(flat.shape[0], np.nan, dtype=np.float32)
            full[valid] = np.concatenate([part[key] for part in parts]) * (reference[valid] if key == "S0" else 1.0)
            maps[key] = full.reshape(spatial)
        return IvimFit(**maps, model=self, noise=noise, warnings=warnings)

    def _noise(self, measured: np.ndarray, noise_sd: float | NoiseEstimate | None) -> tuple[NoiseEstimate | None, str]:
        """(the given noise SD, or the residual estimate from a seeded sample of the fitted voxels; None when it
        cannot be measured: too few voxels or b-values, no b = 0), and why it is None."""
        if isinstance(noise_sd, NoiseEstimate):
            return noise_sd, ""
        if noise_sd is not None:
            return NoiseEstimate(float(noise_sd), "given", 0), ""
        sample = measured
        if len(sample) > NOISE_VOXELS:
            sample = sample[np.random.default_rng(0).choice(len(sample), NOISE_VOXELS, replace=False)]
        try:
            return residual_noise_sd(sample, self.bvalues), ""
        except InputError as error:
            return None, str(error)

    def _check_b0_scale(self, measured: np.ndarray) -> None:
        """``InputError`` when S(lowest b > 0) / S(0) has a median above ``B0_SCALE_LIMIT`` over at least
        ``B0_SCALE_VOXELS`` voxels (``measured [n, n_unique]``, columns sorted by b)."""
        if self.bvalues[0] != 0 or self.bvalues.size < 2 or len(measured) < B0_SCALE_VOXELS:
            return
        ratio = float(np.median(measured[:, 1] / measured[:, 0]))
        if ratio > B0_SCALE_LIMIT:
            raise InputError(
                f"the signal at b = {self.bvalues[1]:g} s/mm² is {ratio:.2f} times the b = 0 signal (median over "
                "the voxels): IVIM signals decay with b, so the b = 0 volume seems scaled differently from the "
                "others; rescale it or check the b-values' order"
            )

    def _snr_warnings(self, s0: np.ndarray, noise: NoiseEstimate | None) -> tuple[str, ...]:
        """A warning (also logged) when the voxels' median SNR, S0 / noise SD, lies outside the SNR range the
        noise-aware network was trained on; none otherwise."""
        if not self.noise_aware or noise is None or self.model_file is None:
            return ()
        training = self.model_file.metadata.get("training", {})
        low, high = training.get("snr_low"), training.get("snr_high")
        if low is None or high is None:
            return ()
        snr = float(np.median(s0) / noise.sd)
        if low <= snr <= high:
            return ()
        message = (
            f"the median SNR of the voxels ({snr:.1f}, noise SD {noise.sd:.4g} {noise.source}) is outside the SNRs "
            f"the {self.method} network was trained on ({low:g}-{high:g}): its maps there are extrapolations; "
            "compare with nlls or bayes"
        )
        log.warning(message)
        return (message,)

    def _per_bvalue(self, signals: np.ndarray) -> np.ndarray:
        """``signals [n, n_acquired]`` as ``[n, n_unique]``: columns sorted by b, repeats averaged."""
        b = self.acquired_bvalues
        if self.bvalues.size == b.size:  # no repeats: a column reorder, no averaging
            return signals[:, np.argsort(b, kind="stable")]
        inverse = np.searchsorted(self.bvalues, b)
        averaged = np.zeros((signals.shape[0], self.bvalues.size))
        np.add.at(averaged.T, inverse, signals.T)  # sum per unique b
        return averaged / np.bincount(inverse)

    def _fit_chunk(self, measured: np.ndarray, y: np.ndarray, noise: NoiseEstimate | None) -> dict[str, np.ndarray]:
        """Maps of one chunk from its signals as measured and divided by S(lowest b), S0 relative to the
        latter; ``noise`` is told to a noise-aware network."""
        if self.method == "nlls":
            estimate = fit_nlls(y, self.bvalues, NllsConfig())
            return {"S0": estimate[:, 0], "f": estimate[:, 1], "D": estimate[:, 2], "Dstar": estimate[:, 3]}
        if self.method == "bayes":
            return fit_bayes(y, self._grid, device=self.device)
        import torch

        with torch.inference_mode():
            noise_sd = noise.sd if self.noise_aware and noise is not None else None
            inputs = torch.from_numpy(normalised_inputs(measured, self.bvalues, noise_sd)).to(self.device)
            estimate = self._network(inputs).cpu().numpy().astype(np.float64)
        maps = {"f": estimate[:, 0], "D": estimate[:, 1], "Dstar": estimate[:, 2], "S0": np.ones(len(y))}
        if self.uncertainty:
            maps.update({"f_sd": estimate[:, 3], "D_sd": estimate[:, 4], "Dstar_sd": estimate[:, 5]})
        return maps


@dataclass(frozen=True, eq=False)
class IvimFit:
    """The maps of one fit, float32 arrays of the voxel shape, NaN where a voxel was not fitted (outside the
    mask, or an invalid signal): ``f`` (fraction), ``D`` and ``Dstar`` (mm²/s), ``S0`` (signal units), and the
    SDs ``f_sd``, ``D_sd``, ``Dstar_sd`` (same units) for the Bayes method (posterior SDs) and for networks with
    an SD head (``networks.IvimNetwork``); None otherwise.
    ``model`` is the ``IvimModel`` that fitted them (None for maps made otherwise, e.g. a phantom's truth);
    ``noise`` the noise SD it was given or measured.
    Index it like the voxel axes (``fit[k, j, i]``, ``fit[mask]``) for the fit of those voxels.
    """

    f: np.ndarray
    D: np.ndarray
    Dstar: np.ndarray
    S0: np.ndarray
    f_sd: np.ndarray | None = None
    D_sd: np.ndarray | None = None
    Dstar_sd: np.ndarray | None = None
    model: IvimModel | None = field(default=None, repr=False)
    #: The series' noise SD (``noise.NoiseEstimate``: given, or measured from the fit residuals), or None.
    noise: NoiseEstimate | None = None
    #: What the reader of the maps should know (e.g. an SNR outside a network's training range).
    warnings: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        """The voxel shape."""
        return np.shape(self.f)

    def maps(self) -> dict[str, np.ndarray]:
        """``{"f", "D", "Dstar", "S0"[, "f_sd", "D_sd", "Dstar_sd"]: map}``, in that order."""
        return {key: getattr(self, key) for key in MAP_KEYS if getattr(self, key) is not None}

    def __getitem__(self, index: Any) -> IvimFit:
        return replace(self, **{key: np.asarray(value)[index] for key, value in self.maps().items()})

    def predict(self, bvalues: Any) -> np.ndarray:
        """The fitted signal S0 [(1 - f) exp(-b D) + f exp(-b D*)] at ``bvalues`` (s/mm², shape ``(n,)``), float64
        of shape ``self.shape + (n,)``; NaN for voxels without a fit."""
        return ivim_signal(np.asarray(bvalues, dtype=float).ravel(), self.f, self.D, self.Dstar, self.S0)
