"""Reconstruct raw multi-coil Cartesian k-space with the unrolled network (``model.unrolled``).

``KspaceReconstructor.load(path=None)`` (None: the shipped model, checked against its SHA-256), then
``.reconstruct(kspace, mask=None)`` for complex k-space ``[coils, ky, kx]`` or ``[slices, coils, ky, kx]``
(``kspace.raw_kspace`` conventions). Each slice, as in training (``training.kspace_examples``): the acquired
samples (the mask, or the non-zero samples); with more than ``virtual_coils`` coils (default ``VIRTUAL_COILS``),
compression to that many virtual coils (``kspace.coil_compression``: the time of every step scales with the coils;
16 coils to 8 changed PSNR by 0.00-0.07 dB on the k-space benchmark's simulated scans); coil maps from the
calibration block (``raw_kspace.box_coil_maps``), the noise SD measured from the k-space edges
(``raw_kspace.kspace_noise_sd``), the CG-SENSE start, the network.
Then a final data-consistency step (``final_consistency``): ``argmin ||A x - y||² + w ||x - x_net||²``, whose weight
``w`` (among ``FINAL_WEIGHTS``, normalised units) is chosen for each slice by k-space cross-validation
(``cross_validation``): ``CROSS_VALIDATION_SHARE`` of the acquired samples outside the calibration block are left
out (``raw_kspace.held_out_samples``), the network and the final step run on the rest, and the weight whose image
predicts the left-out samples best (``||A x - y||`` over them) is kept. The final step then brings in all samples,
the left-out ones too, from that same network image; with ``refit`` the network first runs again on all samples
(twice the network's time; on the benchmark's cases 0.05 dB higher on average, at most 0.3 dB). A small weight
follows the acquired samples closely (clean data, or data the network's prior, learnt on simulated objects, does not
fit: it smoothed the fine texture of real scans), a large one keeps the network's denoising (noisy data).
Cross-validation chooses the parameter of a reconstruction from the data themselves, as generalised
cross-validation does for Tikhonov's (Golub, Heath and Wahba, Technometrics 1979). Returns the complex image
``[slices, ky, kx]`` (``complex_output``) or its magnitude, float32, in the units of the data (the orthonormal
FFT's image scale); ``final_weights`` holds the weight chosen for each slice. Progress is reported and
cancellation honoured between slices.
Precision (``FastMRICommon.device.select_precision``): "auto" runs the network's regulariser in bfloat16 on a CPU
with native bfloat16 instructions, float32 elsewhere; data consistency is always float32.
Denormal floats are flushed to zero (``torch.set_flush_denormal``): conjugate gradients on noise-free data
otherwise reach them and run tens of times slower.
Timings and the designs measured: ``docs/benchmarks/recon_kspace.md``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from FastMRICommon.device import DeviceLike, select_device, select_precision
from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback, raise_if_cancelled, report
from FastMRICommon.model_files import ModelFile, load_model_file, load_shipped_model
from FastMRReconLib.kspace.coil_compression import VIRTUAL_COILS, compress_coils, compression_matrix
from FastMRReconLib.kspace.raw_kspace import (
    acquired_mask,
    box_coil_maps,
    calibration_box,
    check_kspace,
    held_out_samples,
    kspace_noise_sd,
)
from FastMRReconLib.kspace.sense import DEFAULT_REGULARIZATION
from FastMRReconLib.model.reconstructor import MODELS_DIR
from FastMRReconLib.model.unrolled import UnrolledConfig, UnrolledNetwork, fft2c, inner_real, normalised_batch

KSPACE_MODEL = "fastmrrecon_kspace_unrolled.pt"
KSPACE_ARCHITECTURE = "unrolled-modl"
REGISTRY = {KSPACE_ARCHITECTURE: lambda **config: UnrolledNetwork(UnrolledConfig(**config))}
#: The final data-consistency weights tried (normalised units), the share of samples held out to choose among
#: them, the seed of that draw, and the final step's Krylov (CG / Lanczos) steps at most and the relative error
#: at which it stops (``final_consistency``).
FINAL_WEIGHTS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
CROSS_VALIDATION_SHARE = 0.03
CROSS_VALIDATION_SEED = 0
FINAL_CONSISTENCY_ITERATIONS = 30
FINAL_CONSISTENCY_TOLERANCE = 1e-2


def _lanczos_solutions(alphas: list, betas: list, norm, weights: Sequence[float]):
    """``[weights, steps]`` float64: ``(T + w)^-1 |r| e1`` for every ``w``, ``T`` the Lanczos tridiagonal of
    ``alphas`` (its diagonal) and the first ``len(alphas) - 1`` of ``betas``."""
    import torch

    size = len(alphas)
    tridiagonal = torch.diag(torch.stack(alphas).double())
    if size > 1:
        off = torch.stack(betas[: size - 1]).double()
        tridiagonal = tridiagonal + torch.diag(off, 1) + torch.diag(off, -1)
    first = torch.zeros(size, 1, dtype=torch.float64, device=tridiagonal.device)
    first[0] = float(norm)
    shifts = torch.tensor(weights, dtype=torch.float64, device=tridiagonal.device)[:, None, None]
    identity = torch.eye(size, dtype=torch.float64, device=tridiagonal.device)
    return torch.linalg.solve(tridiagonal + shifts * identity, first.expand(len(weights), size, 1))[..., 0]


def final_consistency(image, kspace, maps, mask, weights: Sequence[float]) -> list:
    """``argmin_x ||A x - y||² + w ||x - image||²`` for every ``w`` in ``weights`` (module docstring), for one
    normalised image ``[1, rows, columns]`` (torch); a list of images.

    Written as ``x = image + d``, every ``d`` solves ``(A^H A + w) d = r`` with the same ``r = A^H (y - A image)``,
    so one Lanczos basis of the Krylov space of ``A^H A`` and ``r`` (at most ``FINAL_CONSISTENCY_ITERATIONS``
    applications of ``A^H A``) gives all of them: ``d = V (T + w)^-1 |r| e1`` (Lanczos, J. Res. NBS 1952; this
    Galerkin solution is what as many CG steps from ``image`` give, for each ``w``). The basis stops growing once
    every solution's error is below ``FINAL_CONSISTENCY_TOLERANCE`` of its norm, by the bound ``|residual| / w``
    (``A^H A`` is positive semi-definite) with ``|residual| = beta_k |e_k^T (T + w)^-1 |r| e1|``: large weights
    converge in a few steps, small ones take them all."""
    import torch

    from FastMRReconLib.model.unrolled import SenseOperator

    operator = SenseOperator(maps, mask)
    residual = operator.adjoint(kspace - operator.forward(image))[0]
    norm = torch.sqrt(inner_real(residual[None], residual[None]))[0, 0, 0]
    if float(norm) == 0:
        return [image.clone() for _ in weights]
    basis = [residual / norm]
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    for step in range(FINAL_CONSISTENCY_ITERATIONS):
        product = operator.normal(basis[-1][None])[0]
        if step:
            product = product - betas[-1] * basis[-2]
        alpha = inner_real(basis[-1][None], product[None])[0, 0, 0]
        product = product - alpha * basis[-1]
        alphas.append(alpha)
        beta = torch.sqrt(inner_real(product[None], product[None]))[0, 0, 0]
        if step == FINAL_CONSISTENCY_ITERATIONS - 1 or float(beta) <= 1e-6 * float(norm):
            break
        solutions = _lanczos_solutions(alphas, betas, norm, weights)
        shifts = torch.tensor(weights, dtype=torch.float64, device=solutions.device)
        bounds = float(beta) * solutions[:, -1].abs() / shifts
        if bool((bounds <= FINAL_CONSISTENCY_TOLERANCE * torch.linalg.vector_norm(solutions, dim=1)).all()):
            break
        betas.append(beta)
        basis.append(product / beta)
    solutions = _lanczos_solutions(alphas, betas, norm, weights)
    stacked = torch.stack(basis[: len(alphas)])
    return [
        image + torch.einsum("k,krc->rc", coefficients.to(stacked.real.dtype).to(stacked.dtype), stacked)[None]
        for coefficients in solutions
    ]


class KspaceReconstructor:
    """A loaded unrolled network on a device (module docstring)."""

    def __init__(
        self,
        network: UnrolledNetwork,
        device: DeviceLike = "cpu",
        metadata: dict | None = None,
        virtual_coils: int | None = VIRTUAL_COILS,
        precision: str = "auto",
        refit: bool = False,
    ) -> None:
        self.network = network.to(device).eval()
        self.device = device
        self.metadata = metadata or {}
        #: Run the network again on all samples once the weight is chosen (module docstring); False: one run.
        self.refit = refit
        #: The regulariser's autocast dtype (None: float32), from ``precision`` (module docstring).
        self.autocast_dtype = select_precision(device, precision)
        if virtual_coils is not None and virtual_coils < 2:
            raise InputError(f"virtual coils must be at least 2 (or None: no compression), got {virtual_coils}")
        #: Data with more coils are compressed to this many virtual coils (module docstring); None: never.
        self.virtual_coils = virtual_coils
        #: The final data-consistency weight chosen for each slice by the last ``reconstruct``.
        self.final_weights: list[float] = []

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        device: str = "auto",
        virtual_coils: int | None = VIRTUAL_COILS,
        precision: str = "auto",
        refit: bool = False,
    ) -> KspaceReconstructor:
        """The model in ``path`` (None: the shipped one) on ``device`` ("auto" = CUDA when present); the other
        settings as the constructor's (module docstring)."""
        model: ModelFile = load_shipped_model(MODELS_DIR, KSPACE_MODEL) if path is None else load_model_file(path)
        return cls(model.build(REGISTRY), select_device(device), model.metadata, virtual_coils, precision, refit)

    def network_image(self, kspace: np.ndarray, maps: np.ndarray, acquired: np.ndarray, noise: float) -> tuple:
        """(the network's image, its normalised batch with ``maps`` and ``mask``) of one slice's ``kspace`` over the
        ``acquired`` samples; both torch, the image normalised (times ``batch["scale"]`` in the data's units), before
        the final data-consistency step."""
        import torch

        kspace_t, maps_t, mask_t = (
            torch.from_numpy(np.ascontiguousarray(array))[None].to(self.device)
            for array in (kspace * acquired, maps, acquired.astype(np.float32))
        )
        noise_t = torch.tensor([noise], dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            batch = normalised_batch(kspace_t, maps_t, mask_t, noise_t, DEFAULT_REGULARIZATION)
            self.network.regulariser_autocast = self.autocast_dtype
            image = self.network(batch["start"], batch["kspace"], maps_t, mask_t, batch["noise"])
        return image, {**batch, "maps": maps_t, "mask": mask_t}

    def cross_validation(self, kspace: np.ndarray, maps: np.ndarray, acquired: np.ndarray, noise: float) -> tuple:
        """(the final data-consistency weight of one slice by k-space cross-validation (module docstring), the
        network's image and batch of the run without the held-out samples, as ``network_image``); (the smallest
        weight, None, None) when no sample outside the calibration block can be left out."""
        import torch

        held = held_out_samples(acquired, CROSS_VALIDATION_SHARE, CROSS_VALIDATION_SEED)
        if not held.any():
            return FINAL_WEIGHTS[0], None, None
        errors = []
        with torch.inference_mode():
            image, batch = self.network_image(kspace, maps, acquired & ~held, noise)
            held_t = torch.from_numpy(held).to(self.device)
            truth = torch.from_numpy(np.ascontiguousarray(kspace[:, held])).to(self.device) / batch["scale"][0]
            for candidate in final_consistency(image, batch["kspace"], batch["maps"], batch["mask"], FINAL_WEIGHTS):
                predicted = fft2c(batch["maps"][0] * candidate)[:, held_t]
                errors.append(float(torch.linalg.vector_norm(predicted - truth)))
        return FINAL_WEIGHTS[int(np.argmin(errors))], image, batch

    def reconstruct(
        self,
        kspace: np.ndarray,
        mask: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        complex_output: bool = False,
    ) -> np.ndarray:
        """The image of every slice of ``kspace`` (module docstring); ``mask``: bool ``[ky, kx]``, ``[slices, ky,
        kx]``, or 1D over kx (fastMRI) or ky; None: the non-zero samples."""
        import torch

        torch.set_flush_denormal(True)
        data = check_kspace(kspace)
        single = np.ndim(kspace) == 3
        masks = None if mask is None else np.asarray(mask)
        result = np.empty((data.shape[0],) + data.shape[2:], np.complex64)
        self.final_weights = []
        with torch.inference_mode():
            for index, slice_kspace in enumerate(data):
                raise_if_cancelled(cancel)
                slice_mask = None if masks is None else (masks[index] if masks.ndim == 3 else masks)
                acquired = acquired_mask(slice_kspace, slice_mask)
                box = calibration_box(acquired)
                slice_kspace = slice_kspace * acquired
                if self.virtual_coils is not None and slice_kspace.shape[0] > self.virtual_coils:
                    matrix = compression_matrix(slice_kspace, box, self.virtual_coils)
                    slice_kspace = compress_coils(slice_kspace, matrix)
                maps = box_coil_maps(slice_kspace, box)
                noise = kspace_noise_sd(slice_kspace, acquired)
                weight, image, batch = self.cross_validation(slice_kspace, maps, acquired, noise)
                if image is None or self.refit:
                    image, batch = self.network_image(slice_kspace, maps, acquired, noise)
                scale = batch["scale"][0]
                every = torch.from_numpy(slice_kspace)[None].to(self.device) / scale  # also the held-out samples
                mask_t = torch.from_numpy(acquired.astype(np.float32))[None].to(self.device)
                (image,) = final_consistency(image, every, batch["maps"], mask_t, [weight])
                result[index] = (image[0] * scale).cpu().numpy()
                self.final_weights.append(weight)
                report(progress, (index + 1) / data.shape[0], f"reconstructed slice {index + 1}/{data.shape[0]}")
        output = result if complex_output else np.abs(result).astype(np.float32)
        return output[0] if single else output
