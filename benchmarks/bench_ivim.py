"""IVIM benchmark (``make bench-ivim``): accuracy and speed of the five estimators on held-out synthetic sets.

Writes ``docs/benchmarks/ivim.md`` and its plots (``docs/benchmarks/ivim/``). Networks for the b-value
subsets and dictionary sizes are trained here with the shipped models' protocol (cached in
``build/bench-ivim``; delete it to retrain). Sections can be run alone: ``--sections speed``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from FastMRICommon.model_files import load_model_file, save_model_file
from IVIMEstimatorLib.fits.bayes import BayesConfig, make_grid
from IVIMEstimatorLib.fits.estimate import fit
from IVIMEstimatorLib.fits.priors import get_prior
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES
from IVIMEstimatorLib.training.shipped_models import HELD_OUT_SEED
from IVIMEstimatorLib.training.synthetic import SyntheticSet, nrmse, synthetic_set, within_one_sd
from IVIMEstimatorLib.training.trainer import TrainingConfig, train

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks"
CACHE = REPO / "build" / "bench-ivim"
N_SIGNALS = 20_000
KEYS = ("f", "D", "Dstar")
METHODS = ("scdnn", "mlp", "ivimnet", "nlls", "bayes")
NETWORKS = ("scdnn", "mlp", "ivimnet")
SD_METHODS = (*NETWORKS, "bayes")
SNR_LEVELS = (10.0, 15.0, 20.0, 30.0, 50.0, 100.0)
#: Grid of the Bayes-optimal limit (f, D, D*).
LIMIT_GRID = BayesConfig(31, 31, 36)
SUBSETS = {  # name: b-values (s/mm²), all drawn from the acquired protocol
    "3 b-values (0,50,200,500)": (0, 50, 200, 500),
    "5 b-values A (0,20,50,150,300,500) = accelerated": tuple(ACCELERATED_BVALUES),
    "5 b-values B (0,10,50,100,200,500)": (0, 10, 50, 100, 200, 500),
    "5 b-values C (0,20,80,150,300,500)": (0, 20, 80, 150, 300, 500),
    "5 b-values D (0,10,20,50,100,500)": (0, 10, 20, 50, 100, 500),
    "5 b-values E (0,50,100,150,300,500)": (0, 50, 100, 150, 300, 500),
    "7 b-values (0,10,20,50,100,200,300,500)": (0, 10, 20, 50, 100, 200, 300, 500),
}
DICTIONARY_SIZES = (200, 400, 600, 800)
#: Training of the ablations (b-value subsets, dictionary sizes), each trained from scratch: the schedule of their
#: published numbers, a third of the shipped networks' epochs (``TrainingConfig``'s defaults) and unweighted.
ABLATION_EPOCHS, ABLATION_SNR_LOSS_POWER = 10, 0.0


def errors(maps: dict, data: SyntheticSet) -> dict:
    """MSE and NRMSE (rmse / mean of truth) per parameter."""
    out = {}
    for key in KEYS:
        truth = getattr(data, key)
        out[key] = {"mse": float(np.mean((maps[key] - truth) ** 2)), "nrmse": nrmse(maps[key], truth)}
    return out


def limit_grid(prior_name: str, bvalues: np.ndarray) -> tuple[torch.Tensor, ...]:
    """The limits' parameter grid (``LIMIT_GRID``) as float32 tensors: unit-S0 curves ``[G, n_b]``, log prior
    ``[G]`` and (f, D, D*) ``[G, 3]``."""
    grid = make_grid(get_prior(prior_name), bvalues, LIMIT_GRID)
    return tuple(torch.from_numpy(array).float() for array in (grid.curves, grid.log_prior, grid.theta))


def fit_shipped(data: SyntheticSet, method: str, noise: str, snr: float) -> dict:
    """``method``'s maps of ``data`` (placenta prior, accelerated protocol), the noise SD "measured" from the fit
    residuals or "given" (1 / ``snr``)."""
    return fit(
        data.signals,
        ACCELERATED_BVALUES,
        method=method,
        prior="placenta",
        device="cpu",
        noise_sd=1.0 / snr if noise == "given" else None,
    )


def bayes_limit(data: SyntheticSet, prior_name: str, chunk: int = 256) -> dict:
    """The Bayes-optimal limit: the posterior mean under the data's true generative model (the prior, S0 = 1,
    Rician noise of known sigma = 1/SNR) on a fine grid; no estimator has a smaller expected squared error
    on this population (up to the grid's resolution)."""
    curves, log_prior, theta = limit_grid(prior_name, data.bvalues)  # curves: S0 = 1
    sigma2 = (1.0 / data.snr) ** 2
    out = []
    with torch.inference_mode():
        for start in range(0, len(data.signals), chunk):
            y = torch.from_numpy(data.signals[start : start + chunk].astype(np.float32))  # [n, n_b]
            x = y[:, None, :] * curves[None] / sigma2  # Rician: log I0(y g / s²) - g² / (2 s²)
            log_likelihood = torch.sum(torch.log(torch.special.i0e(x)) + x, dim=2) - torch.sum(curves**2, dim=1)[
                None
            ] / (2 * sigma2)
            weight = torch.softmax(log_likelihood + log_prior[None], dim=1)
            out.append((weight @ theta).double().numpy())
    mean = np.concatenate(out)
    return {"f": mean[:, 0], "D": mean[:, 1], "Dstar": mean[:, 2]}


def limit_path(data: SyntheticSet, limit: Callable[[SyntheticSet, str], dict], prior_name: str) -> Path:
    """Where :func:`stored_limit` keeps ``limit(data, prior_name)``: named by the limit and a digest of everything
    it depends on (prior, ``LIMIT_GRID``, SNR, b-values, signals)."""
    digest = hashlib.sha256()
    for part in (prior_name, repr(LIMIT_GRID), repr(data.snr)):
        digest.update(part.encode())
    digest.update(np.asarray(data.bvalues, float).tobytes())
    digest.update(np.ascontiguousarray(data.signals).tobytes())
    return CACHE / f"{limit.__name__}_{digest.hexdigest()[:16]}.npz"


def stored_limit(
    data: SyntheticSet, limit: Callable[[SyntheticSet, str], dict], prior_name: str = "placenta"
) -> tuple[dict, bool]:
    """(``limit(data, prior_name)``: estimates {f, D, Dstar}, from the cache?): the limits depend on no network, so
    each is stored in ``CACHE`` (:func:`limit_path`) with the signals, and reused when the signals are the same."""
    path = limit_path(data, limit, prior_name)
    if path.is_file():
        stored = np.load(path)
        if np.array_equal(stored["signals"], data.signals):
            return {key: stored[key] for key in KEYS}, True
    result = limit(data, prior_name)
    CACHE.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.stem + ".part.npz")
    np.savez(temporary, signals=data.signals, **{key: result[key] for key in KEYS})
    temporary.replace(path)
    return result, False


def scale_free_limit(data: SyntheticSet, prior_name: str, chunk: int = 16, s0_points: int = 25) -> dict:
    """The Bayes-optimal limit of scale-free estimators: the posterior mean as in :func:`bayes_limit` (the prior,
    Rician noise of known sigma = 1/SNR) but with S0 unknown, marginalised under the scale group's invariant
    prior 1/S0 (on a log grid of ``s0_points`` over +-5 sigma around 1, where the likelihood lives). Every method
    here is scale-free (scaling the signals and the noise SD together scales S0 and leaves f, D, D* unchanged),
    and among such estimators this generalised Bayes estimator has the smallest expected squared error (the best
    invariant estimator: Berger J.O., Statistical Decision Theory and Bayesian Analysis, 2nd ed., 1985, sec. 6.6).
    :func:`bayes_limit` knows S0 = 1 exactly, which no method given only the signals can."""
    curves, log_prior, theta = limit_grid(prior_name, data.bvalues)  # curves: S0 = 1
    out = []
    with torch.inference_mode():
        for start in range(0, len(data.signals), chunk):
            sigma = torch.from_numpy(data.noise_sd[start : start + chunk].astype(np.float32))[:, None, None, None]
            reach = 5.0 * sigma.clamp(max=0.19)
            low, high = torch.log1p(-reach), torch.log1p(reach)
            s0 = torch.exp(low + (high - low) * torch.linspace(0.0, 1.0, s0_points)[None, :, None, None])  # [n, S]
            y = torch.from_numpy(data.signals[start : start + chunk].astype(np.float32))[:, None, None, :]
            g = s0 * curves[None, None]  # [n, S, G, n_b]
            x = y * g / sigma**2
            log_likelihood = torch.sum(torch.log(torch.special.i0e(x)) + x - g**2 / (2 * sigma**2), dim=3)
            # 1/S0 prior on a log grid: equal weights (d log S0 = dS0 / S0)
            log_likelihood = torch.logsumexp(log_likelihood, dim=1)
            weight = torch.softmax(log_likelihood + log_prior[None], dim=1)
            out.append((weight @ theta).double().numpy())
    mean = np.concatenate(out)
    return {"f": mean[:, 0], "D": mean[:, 1], "Dstar": mean[:, 2]}


def ablation_config(**changes: Any) -> TrainingConfig:
    """The SCDNN training of an ablation (``ABLATION_EPOCHS``, ``ABLATION_SNR_LOSS_POWER``) with ``changes``."""
    base = TrainingConfig(method="scdnn", epochs=ABLATION_EPOCHS, snr_loss_power=ABLATION_SNR_LOSS_POWER)
    return dataclasses.replace(base, **changes)


def trained(name: str, config: TrainingConfig) -> tuple:
    """A network for ``config``, trained once and cached; returns (model, training seconds)."""
    path = CACHE / f"{name}.pt"
    if path.is_file():
        model = load_model_file(path)
        stored = model.metadata["training"]
        if stored["bvalues"] == list(map(float, config.bvalues)) and all(
            stored.get(field, 0.0 if field == "snr_loss_power" else None) == getattr(config, field)
            for field in ("dictionary_size", "samples", "epochs", "snr_loss_power")
        ):
            return model, model.metadata["training"]["seconds"]
    print(f"training {name} ...", flush=True)
    model, _ = train(config)
    save_model_file(path, model)
    return model, model.metadata["training"]["seconds"]


def all_methods(data: SyntheticSet, bayes_prior: str = "generic") -> dict:
    return {
        method: errors(fit(data.signals, data.bvalues, method=method, prior=bayes_prior, device="cpu"), data)
        for method in METHODS
    }


def table(rows: dict, metric: str = "nrmse", title: str = "method") -> str:
    lines = [f"| {title} | f | D | D* |", "|---|---|---|---|"]
    for name, result in rows.items():
        cells = [f"{result[key][metric]:.3g}" if metric == "mse" else f"{result[key][metric]:.3f}" for key in KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section_table1(report: dict) -> str:
    data = synthetic_set(get_prior("placenta"), ACCELERATED_BVALUES, N_SIGNALS, 30.0, HELD_OUT_SEED + 1)
    rows = all_methods(data)
    rows["Bayes-optimal limit (placenta prior)"] = errors(bayes_limit(data, "placenta"), data)
    report["table1"] = rows
    limit = rows["Bayes-optimal limit (placenta prior)"]
    ratio = {key: rows["scdnn"][key]["nrmse"] / limit[key]["nrmse"] for key in KEYS}
    report["scdnn_over_limit"] = ratio
    _bar_plot(rows, OUT / "ivim" / "table1_nrmse.png", "Accelerated protocol, placenta prior, SNR 30")
    return (
        f"## Table 1: accuracy on the accelerated protocol\n\n{N_SIGNALS} held-out signals (seed "
        f"{HELD_OUT_SEED + 1}), placenta prior, Rician SNR 30, b = 0,20,50,150,300,500 s/mm². Networks: the "
        f"shipped models; `bayes`: with the uninformative `generic` prior (the module's default, the placenta prior, is the data's own prior here and would favour it; grid 31x31x36, Gaussian "
        f"likelihood with S0 and sigma marginalised); the limit is the posterior mean under the data's true "
        f"generative model (placenta prior, S0 = 1, Rician noise of known sigma) on a 31x31x36 grid.\n\nNRMSE (rmse / mean of truth):\n\n{table(rows)}\n\n"
        f"MSE (f unitless, D and D* in (mm²/s)²):\n\n{table(rows, 'mse')}\n\n"
        f"SCDNN / limit: f {ratio['f']:.3f}, D {ratio['D']:.3f}, D* {ratio['Dstar']:.3f} (target <= 1.10).\n\n"
        f"![Table 1](ivim/table1_nrmse.png)\n"
    )


def section_table2(report: dict) -> str:
    text = ["## Table 2: generalisation (the shipped models at other SNRs and on a shifted population)\n"]
    report["table2"] = {}
    for label, prior, snr in (
        ("SNR 20", "placenta", 20.0),
        ("SNR 50", "placenta", 50.0),
        ("shifted population f ~ N(0.38, 0.05) (3 T), SNR 30", "placenta-3T", 30.0),
    ):
        data = synthetic_set(get_prior(prior), ACCELERATED_BVALUES, N_SIGNALS, snr, HELD_OUT_SEED + 2)
        rows = all_methods(data)
        rows[f"Bayes-optimal limit ({prior} prior)"] = errors(bayes_limit(data, prior), data)
        report["table2"][label] = rows
        text.append(f"### {label}\n\nNRMSE:\n\n{table(rows)}\n")
    return "\n".join(text)


def section_table3(report: dict) -> str:
    rows, report["table3"] = [], {}
    for index, (label, bvalues) in enumerate(SUBSETS.items()):
        b = np.asarray(bvalues, float)
        data = synthetic_set(get_prior("placenta"), b, N_SIGNALS, 30.0, HELD_OUT_SEED + 3)
        model, _ = trained(f"subset{index}", ablation_config(bvalues=tuple(float(value) for value in bvalues)))
        result = {
            "scdnn": errors(fit(data.signals, b, method="scdnn", model=model, device="cpu"), data),
            "nlls": errors(fit(data.signals, b, method="nlls"), data),
            "limit": errors(bayes_limit(data, "placenta"), data),
        }
        report["table3"][label] = result
        rows.append(
            f"| {label} | "
            + " | ".join(f"{result[m][k]['nrmse']:.3f}" for m in ("scdnn", "nlls", "limit") for k in KEYS)
            + " |"
        )
    header = (
        "| b-values | SCDNN f | SCDNN D | SCDNN D* | NLLS f | NLLS D | NLLS D* | limit f | limit D | limit D* |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    return (
        "## Table 3: b-value subsets\n\nSCDNN trained for each subset (placenta prior, SNR 30, the shipped "
        "protocol), tested on held-out signals of that subset. NRMSE:\n\n" + header + "\n" + "\n".join(rows) + "\n"
    )


def section_fig4(report: dict) -> str:
    data = synthetic_set(get_prior("placenta"), ACCELERATED_BVALUES, N_SIGNALS, 30.0, HELD_OUT_SEED + 4)
    sizes, lines = [], ["| dictionary size | f | D | D* | training time (s) |", "|---|---|---|---|---|"]
    report["fig4"] = {}
    for size in DICTIONARY_SIZES:
        config = ablation_config(dictionary_size=size)
        model, seconds = trained(f"dictionary{size}", config)
        result = errors(fit(data.signals, ACCELERATED_BVALUES, method="scdnn", model=model, device="cpu"), data)
        report["fig4"][size] = {"errors": result, "seconds": seconds}
        sizes.append((size, result, seconds))
        lines.append(f"| {size} | " + " | ".join(f"{result[k]['nrmse']:.3f}" for k in KEYS) + f" | {seconds:.0f} |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key in KEYS:
        left.plot([s for s, _, _ in sizes], [r[key]["nrmse"] for _, r, _ in sizes], "o-", label=key)
    left.set_xlabel("dictionary size")
    left.set_ylabel("held-out NRMSE")
    left.legend()
    right.plot([s for s, _, _ in sizes], [t for _, _, t in sizes], "s-")
    right.set_xlabel("dictionary size")
    right.set_ylabel("training time (s, 2 CPU cores)")
    figure.tight_layout()
    figure.savefig(OUT / "ivim" / "fig4_dictionary_size.png", dpi=100)
    plt.close(figure)
    return (
        "## Fig. 4: dictionary size\n\nSCDNN on the accelerated protocol, trained from scratch per size "
        f"({config.samples:,} signals, {config.epochs} epochs); NRMSE on held-out signals:\n\n"
        + "\n".join(lines)
        + "\n\n![Fig. 4](ivim/fig4_dictionary_size.png)\n"
    )


def section_speed(report: dict) -> str:
    from dipy.core.gradients import gradient_table
    from dipy.reconst.ivim import IvimModel

    data = synthetic_set(get_prior("placenta"), ACCELERATED_BVALUES, N_SIGNALS, 30.0, HELD_OUT_SEED + 5)
    rows, report["speed"] = [], {}
    for method in METHODS:
        fit(data.signals[:100], ACCELERATED_BVALUES, method=method, device="cpu", noise_sd=1 / 30)  # warm-up
        for noise_sd in (None, 1 / 30) if method in NETWORKS else (None,):
            start = time.perf_counter()
            fit(data.signals, ACCELERATED_BVALUES, method=method, device="cpu", noise_sd=noise_sd)
            rate = N_SIGNALS / (time.perf_counter() - start)
            name = method if noise_sd is None else f"{method}, noise SD given"
            report["speed"][name] = rate
            rows.append(f"| {name} | {N_SIGNALS} | {rate:,.0f} |")
    n_dipy = 300
    bvecs = np.tile([1.0, 0.0, 0.0], (len(ACCELERATED_BVALUES), 1))
    bvecs[0] = 0
    gtab = gradient_table(ACCELERATED_BVALUES, bvecs=bvecs, b0_threshold=0)
    # dipy's default bounds cap f at 0.2; widened to the placenta prior's f (and D* to 1 mm²/s)
    model = IvimModel(
        gtab,
        fit_method="trr",
        split_b_D=200.0,
        split_b_S0=200.0,
        bounds=([0.0, 0.0, 0.0, 0.0], [np.inf, 0.7, 1.0, 0.01]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        dipy_fit = model.fit(data.signals[:n_dipy].astype(np.float64))
        rate = n_dipy / (time.perf_counter() - start)
    params = dipy_fit.model_params
    subset = SyntheticSet(
        data.signals[:n_dipy],
        data.f[:n_dipy],
        data.D[:n_dipy],
        data.Dstar[:n_dipy],
        data.bvalues,
        30.0,
        data.noise_sd[:n_dipy],
    )
    dipy_errors = errors({"f": params[:, 1], "Dstar": params[:, 2], "D": params[:, 3]}, subset)
    ours = errors(fit(subset.signals, ACCELERATED_BVALUES, method="nlls"), subset)
    report["speed"]["dipy_trr"] = rate
    report["dipy_trr_errors"] = {"dipy": dipy_errors, "nlls_same_voxels": ours}
    rows.append(f"| dipy IvimModel (trr) | {n_dipy} | {rate:,.0f} |")
    return (
        "## Speed\n\nVoxels per second on this machine (CPU, torch threads: "
        f"{torch.get_num_threads()}), accelerated protocol, after a warm-up call; the networks give their SD maps "
        "too, and without a given noise SD each fit first measures it from the residuals of 2,000 voxels (a fixed "
        "cost, about 0.2 s):\n\n| method | voxels | voxels/s |\n"
        "|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"dipy `IvimModel(fit_method='trr', split_b_D=200, split_b_S0=200)` with f bounds widened to 0.7; on the same "
        f"{n_dipy} voxels NRMSE f/D/D*: dipy {dipy_errors['f']['nrmse']:.3f} / {dipy_errors['D']['nrmse']:.3f} / "
        f"{dipy_errors['Dstar']['nrmse']:.3f}, our NLLS {ours['f']['nrmse']:.3f} / {ours['D']['nrmse']:.3f} / "
        f"{ours['Dstar']['nrmse']:.3f}.\n"
    )


def section_snr(report: dict) -> str:
    """Issue 25: every method against the Bayes-optimal limit from SNR 10 to 100 with one shipped model per
    method (the noise SD measured from the fit residuals, and given), and the calibration of the SD maps."""
    rows, calibration, result = [], [], {}
    for snr in SNR_LEVELS:
        data = synthetic_set(get_prior("placenta"), ACCELERATED_BVALUES, N_SIGNALS, snr, HELD_OUT_SEED + 6)
        limit = errors(stored_limit(data, bayes_limit)[0], data)
        entry: dict = {"limit": limit}
        for method in METHODS:
            for noise in ("measured", "given") if method in NETWORKS else ("measured",):
                maps = fit_shipped(data, method, noise, snr)
                scores = errors(maps, data)
                for key in KEYS:
                    scores[key]["over_limit"] = scores[key]["nrmse"] / limit[key]["nrmse"]
                    if f"{key}_sd" in maps:
                        truth = getattr(data, key)
                        scores[key]["within_1sd"] = within_one_sd(maps[key], maps[f"{key}_sd"], truth)
                entry[f"{method} ({noise} noise)"] = scores
        result[f"{snr:g}"] = entry
        cells = [f"{limit[key]['nrmse']:.3f}" for key in KEYS]
        for name in (
            "scdnn (measured noise)",
            "scdnn (given noise)",
            "mlp (measured noise)",
            "mlp (given noise)",
            "ivimnet (measured noise)",
            "nlls (measured noise)",
            "bayes (measured noise)",
        ):
            cells.append(" / ".join(f"{entry[name][key]['over_limit']:.3f}" for key in KEYS))
        rows.append(f"| {snr:g} | " + " | ".join(cells) + " |")
        cover = []
        for method in SD_METHODS:
            cover.append(" / ".join(f"{entry[f'{method} (measured noise)'][key]['within_1sd']:.0%}" for key in KEYS))
        calibration.append(f"| {snr:g} | " + " | ".join(cover) + " |")
    report["snr"] = result
    worst = {
        name: max(
            result[f"{snr:g}"][f"{name} (measured noise)"][key]["over_limit"] for snr in SNR_LEVELS for key in KEYS
        )
        for name in ("scdnn", "mlp")
    }
    report["snr_worst_over_limit"] = worst
    coverage = [
        result[f"{snr:g}"][f"{method} (measured noise)"][key]["within_1sd"]
        for snr in SNR_LEVELS
        for method in NETWORKS
        for key in KEYS
    ]
    return (
        "## SNR 10 to 100: one model per method (issue 25)\n\n"
        f"{N_SIGNALS} held-out signals per SNR (seed {HELD_OUT_SEED + 6}), placenta prior, accelerated protocol. "
        "Networks: the shipped models (trained once over SNR 8-150, told each voxel's SNR); the noise SD is "
        "measured from the fit residuals of 2,000 voxels (`IvimFit.noise`, as when a series has no background) "
        "or given (1/SNR); `nlls`; `bayes` with the placenta prior. Limit: the posterior mean under the true "
        "generative model (its NRMSE f / D / D* in the first columns). Each method's cell: its NRMSE over the "
        "limit's, f / D / D*. This limit knows S0 = 1, which no method given only the signals can: issue 25's targets "
        "(SCDNN <= 1.05, MLP <= 1.10 with the noise measured) are read against the limit of scale-free estimators in "
        "[ivim_scale_free.md](ivim_scale_free.md).\n\n"
        "| SNR | limit f | limit D | limit D* | SCDNN (measured) | SCDNN (given) | MLP (measured) | MLP (given) | "
        "IVIM-NET (measured) | NLLS | Bayes |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nWorst ratio over SNR and parameters: SCDNN {worst['scdnn']:.3f}, MLP {worst['mlp']:.3f}.\n\n"
        "Calibration of the SD maps: share of signals whose true value lies within +-1 SD of the estimate, "
        "f / D / D* (target 60-76%; noise measured):\n\n"
        "| SNR | SCDNN | MLP | IVIM-NET | Bayes (placenta) |\n|---|---|---|---|---|\n"
        + "\n".join(calibration)
        + f"\n\nNetworks' range over SNRs and parameters: {min(coverage):.0%} to {max(coverage):.0%}.\n"
    )


def _bar_plot(rows: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / len(rows)
    for index, (name, result) in enumerate(rows.items()):
        axis.bar(np.arange(3) + index * width, [min(result[k]["nrmse"], 1.5) for k in KEYS], width, label=name)
    axis.set_xticks(np.arange(3) + 0.4 - width / 2, ["f", "D", "D*"])
    axis.set_ylabel("NRMSE (clipped at 1.5)")
    axis.set_title(title)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


SECTIONS = {
    "table1": section_table1,
    "table2": section_table2,
    "table3": section_table3,
    "fig4": section_fig4,
    "speed": section_speed,
    "snr": section_snr,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    args = parser.parse_args()
    (OUT / "ivim").mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    results_file = OUT / "ivim" / "results.json"
    parts_file = OUT / "ivim" / "sections.json"
    report = json.loads(results_file.read_text()) if results_file.is_file() else {}
    parts = json.loads(parts_file.read_text()) if parts_file.is_file() else {}
    for name in args.sections:
        start = time.perf_counter()
        parts[name] = SECTIONS[name](report) + f"\n_Section run time: {time.perf_counter() - start:.0f} s._\n"
        results_file.write_text(json.dumps(report, indent=1, default=float))
        parts_file.write_text(json.dumps(parts, indent=1))
        print(f"section {name} done", flush=True)
    header = (
        f"# IVIM benchmark\n\nCommand: `make bench-ivim` (= `python benchmarks/bench_ivim.py`; one section: "
        f"`--sections speed`). Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"no GPU, Python {platform.python_version()}, torch {torch.__version__}. All data synthetic (the "
        f"`placenta` prior: f ~ U(0.05, 0.55), D ~ U(0.8, 2.5)e-3, D* ~ log-U(10, 150)e-3 mm²/s), S0 = 1, "
        f"Rician noise sigma = 1/SNR. Raw numbers: `ivim/results.json`. The limits here know S0 = 1; the limit of "
        f"scale-free estimators (S0 unknown, as for every method given only the signals) and the networks against "
        f"it: [ivim_scale_free.md](ivim_scale_free.md) (`make bench-ivim` runs both scripts).\n"
    )
    (OUT / "ivim.md").write_text(header + "\n" + "\n".join(parts[name] for name in SECTIONS if name in parts))


if __name__ == "__main__":
    main()
