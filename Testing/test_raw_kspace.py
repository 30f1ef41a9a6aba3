"""Raw multi-coil k-space: the readers (fastMRI HDF5, ISMRMRD HDF5, BART cfl, npy), the acquired samples, the
calibration block, coil maps and noise from raw data, 2D Poisson-disc masks, and the unrolled network's data
consistency, with the bad inputs the issue lists."""

from __future__ import annotations

import numpy as np
import pytest

from FastMRICommon.errors import InputError
from FastMRReconLib.kspace.coils import coil_sensitivities
from FastMRReconLib.kspace.fft import fft2c, ifft2c
from FastMRReconLib.kspace.poisson_disc import poisson_disc_mask
from FastMRReconLib.kspace.raw_kspace import (
    RAYLEIGH_MEDIAN,
    acquired_mask,
    box_coil_maps,
    calibration_box,
    check_kspace,
    kspace_noise_sd,
    read_raw_kspace,
    write_bart,
)
from FastMRReconLib.kspace.simulate import smooth_phase


def phantom_kspace(shape=(64, 56), coils=6, sigma=0.0, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """(k-space [coils, ky, kx], the complex object) of an elliptic object with texture and edges blurred over
    about a pixel, as a scanner's band-limited acquisition gives them."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    obj = ndimage.gaussian_filter((x**2 / 0.6 + y**2 / 0.8 < 1) * (1.0 + 0.5 * np.cos(6 * x) * np.sin(4 * y)), 1.0)
    obj = obj * np.exp(1j * smooth_phase(shape, rng))
    maps = coil_sensitivities(shape, coils, seed=seed)
    kspace = fft2c(maps * obj) + sigma * (
        rng.standard_normal((coils, *shape)) + 1j * rng.standard_normal((coils, *shape))
    )
    return kspace.astype(np.complex64), obj


def lines_mask(shape, step=3, centre=12) -> np.ndarray:
    rows = np.zeros(shape[0], bool)
    rows[::step] = True
    rows[shape[0] // 2 - centre // 2 : shape[0] // 2 + centre // 2] = True
    return np.broadcast_to(rows[:, None], shape).copy()


# -- readers -----------------------------------------------------------------------------------------------------
def test_npy_and_bart_files_read_back_the_same_kspace(tmp_path):
    kspace, _ = phantom_kspace()
    np.save(tmp_path / "one.npy", kspace)
    np.save(tmp_path / "many.npy", np.stack([kspace, 2 * kspace]))
    assert read_raw_kspace(tmp_path / "one.npy").kspace.shape == (1, *kspace.shape)
    many = read_raw_kspace(tmp_path / "many.npy").kspace
    np.testing.assert_array_equal(many[1], 2 * kspace)
    write_bart(tmp_path / "slice", kspace)
    for name in ("slice.cfl", "slice.hdr"):
        np.testing.assert_array_equal(read_raw_kspace(tmp_path / name).kspace[0], kspace)
    # a BART file of [x, y, coils] (one coil, several z), as some of BART's example data
    (tmp_path / "xyc.hdr").write_text(f"# Dimensions\n{kspace.shape[1]} {kspace.shape[2]} {kspace.shape[0]} 1 1\n")
    kspace.transpose(1, 2, 0).ravel(order="F").tofile(tmp_path / "xyc.cfl")
    np.testing.assert_array_equal(read_raw_kspace(tmp_path / "xyc.cfl").kspace[0], kspace)


def test_fastmri_hdf5_with_a_column_mask(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py is needed for HDF5 k-space")
    kspace, _ = phantom_kspace()
    columns = np.zeros(kspace.shape[-1], bool)
    columns[::2] = True
    columns[24:32] = True
    undersampled = kspace * columns[None, None, :]
    with h5py.File(tmp_path / "scan.h5", "w") as store:
        store["kspace"] = undersampled[None]
        store["mask"] = columns
    raw = read_raw_kspace(tmp_path / "scan.h5")
    assert raw.kspace.shape == (1, *kspace.shape)
    mask = acquired_mask(raw.kspace[0], raw.mask)
    np.testing.assert_array_equal(mask, np.broadcast_to(columns, mask.shape))


def _ismrmrd_file(path, kspace, trajectory=0, noise_line=True):
    import h5py

    coils, rows, samples = kspace.shape
    head = np.dtype(
        [
            ("flags", "<u8"),
            ("number_of_samples", "<u2"),
            ("active_channels", "<u2"),
            ("trajectory_dimensions", "<u2"),
            ("idx", [("kspace_encode_step_1", "<u2"), ("slice", "<u2")]),
        ]
    )
    record = np.dtype([("head", head), ("data", h5py.vlen_dtype(np.dtype("<f4")))])
    entries = []
    if noise_line:  # a noise measurement (flag 19) must be skipped
        noise = np.random.default_rng(1).standard_normal(2 * coils * samples).astype(np.float32)
        entries.append(((1 << 18, samples, coils, trajectory, (0, 0)), noise))
    for line in range(0, rows, 2):
        entries.append(
            ((0, samples, coils, trajectory, (line, 0)), np.ascontiguousarray(kspace[:, line]).view(np.float32).ravel())
        )
    data = np.empty(len(entries), record)
    for index, (header, values) in enumerate(entries):
        data[index] = (header, values)
    xml = (
        f"<ismrmrdHeader><encoding><encodedSpace><matrixSize><x>{samples}</x><y>{rows}</y><z>1</z>"
        "</matrixSize></encodedSpace></encoding></ismrmrdHeader>"
    )
    with h5py.File(path, "w") as store:
        store.create_dataset("dataset/data", data=data)
        store.create_dataset("dataset/xml", data=np.array([xml.encode()], dtype=object), dtype=h5py.string_dtype())


def test_ismrmrd_lines_are_placed_by_their_encoding_step(tmp_path):
    pytest.importorskip("h5py", reason="h5py is needed for HDF5 k-space")
    kspace, _ = phantom_kspace()
    _ismrmrd_file(tmp_path / "raw.h5", kspace)
    read = read_raw_kspace(tmp_path / "raw.h5").kspace[0]
    np.testing.assert_allclose(read[:, ::2], kspace[:, ::2], rtol=1e-6)
    assert not read[:, 1::2].any()
    _ismrmrd_file(tmp_path / "radial.h5", kspace, trajectory=2)
    with pytest.raises(InputError, match="non-Cartesian"):
        read_raw_kspace(tmp_path / "radial.h5")


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 32, 32), np.complex64), "all zeros"),
        (np.ones((1, 32, 32), np.complex64), "1 coil"),
        (np.ones((4, 32, 32), np.float32), "must be complex"),
        (np.full((4, 32, 32), np.nan, np.complex64), "NaN"),
        (np.ones((4, 8, 32), np.complex64), "too small"),
        (np.ones((2, 3, 4, 5, 6), np.complex64), "must be"),
    ],
)
def test_bad_kspace_gets_one_clear_error(array, message):
    with pytest.raises(InputError, match=message):
        check_kspace(array)


def test_unknown_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="use one of"):
        read_raw_kspace(tmp_path / "scan.dcm")
    with pytest.raises(InputError, match="no such k-space file"):
        read_raw_kspace(tmp_path / "absent.npy")
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="cannot read broken.npy"):
        read_raw_kspace(tmp_path / "broken.npy")


# -- acquired samples, calibration, maps, noise ---------------------------------------------------------------------
def test_mask_from_data_and_a_mask_that_does_not_match():
    kspace, _ = phantom_kspace()
    mask = lines_mask(kspace.shape[-2:])
    undersampled = kspace * mask
    np.testing.assert_array_equal(acquired_mask(undersampled), mask)
    np.testing.assert_array_equal(acquired_mask(undersampled, mask[:, 0]), mask)  # 1D over ky
    with pytest.raises(InputError, match="does not match the data"):
        acquired_mask(kspace, mask)
    with pytest.raises(InputError, match="does not fit"):
        acquired_mask(undersampled, mask[:10])


def test_calibration_box_finds_the_fully_sampled_centre():
    mask = lines_mask((64, 56), centre=12)
    rows, columns = calibration_box(mask)
    assert (rows.stop - rows.start, columns.stop - columns.start) == (12, 56)
    poisson = poisson_disc_mask((64, 56), 4.0, calibration=16, seed=0)
    rows, columns = calibration_box(poisson)
    assert rows.stop - rows.start >= 16 and columns.stop - columns.start >= 16
    with pytest.raises(InputError, match="coil maps need at least"):
        calibration_box(lines_mask((64, 56), centre=4))
    empty_centre = lines_mask((64, 56))
    empty_centre[32, 28] = False
    with pytest.raises(InputError, match="centre is not acquired"):
        calibration_box(empty_centre)


def test_coil_maps_from_the_calibration_block_recover_the_object():
    """Maps from the calibration block combine fully sampled coil images into the object (up to the maps' common
    phase): |S^H F^H y| / sum |S|^2 equals |object| inside it."""
    kspace, obj = phantom_kspace()
    maps = box_coil_maps(kspace * lines_mask(kspace.shape[-2:]), calibration_box(lines_mask(kspace.shape[-2:])))
    combined = np.abs(np.sum(np.conj(maps) * ifft2c(kspace), axis=0)) / np.maximum(np.sum(np.abs(maps) ** 2, 0), 1e-6)
    inside = np.abs(obj) > 0.3
    np.testing.assert_allclose(combined[inside], np.abs(obj)[inside], rtol=0.05)


@pytest.mark.parametrize("sigma", [0.002, 0.02, 0.2])
def test_noise_sd_is_measured_from_the_kspace_edges(sigma):
    kspace, _ = phantom_kspace(shape=(96, 96), sigma=sigma, seed=3)
    mask = lines_mask(kspace.shape[-2:], step=2, centre=16)
    measured = kspace_noise_sd(kspace * mask, mask)
    assert measured == pytest.approx(sigma, rel=0.15)
    assert RAYLEIGH_MEDIAN == pytest.approx(1.1774, abs=1e-4)


def test_noise_free_kspace_gets_a_positive_floor():
    kspace, _ = phantom_kspace()
    mask = np.ones(kspace.shape[-2:], bool)
    assert 0 < kspace_noise_sd(kspace, mask) < 1e-2 * np.abs(kspace).max()


# -- 2D masks ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("acceleration", [2.0, 4.0, 8.0])
def test_poisson_disc_masks_hit_their_acceleration_with_a_full_centre(acceleration):
    mask = poisson_disc_mask((120, 100), acceleration, calibration=16, seed=5)
    assert mask.sum() == round(120 * 100 / acceleration)
    assert mask[60 - 8 : 60 + 8, 50 - 8 : 50 + 8].all()
    # variable density: the centre quarter is sampled more densely than the outer ring
    assert mask[30:90, 25:75].mean() > mask.mean()
    np.testing.assert_array_equal(mask, poisson_disc_mask((120, 100), acceleration, calibration=16, seed=5))


def test_poisson_disc_mask_refuses_what_it_cannot_draw():
    with pytest.raises(InputError, match="from 2 to 16"):
        poisson_disc_mask((64, 64), 1.0)
    with pytest.raises(InputError, match="calibration block alone"):
        poisson_disc_mask((32, 32), 16.0, calibration=24)


# -- the unrolled network's data consistency ---------------------------------------------------------------------
def test_data_consistency_step_solves_the_regularised_normal_equations():
    """conjugate_gradient(A, A^H y + mu z, mu) converges to (A^H A + mu)^-1 (A^H y + mu z), checked by its
    residual; and with mu -> 0 the solution matches the acquired samples."""
    import torch

    from FastMRReconLib.model.unrolled import SenseOperator, conjugate_gradient

    kspace, _ = phantom_kspace()
    mask = lines_mask(kspace.shape[-2:])
    maps = box_coil_maps(kspace * mask, calibration_box(mask))
    operator = SenseOperator(torch.from_numpy(maps)[None], torch.from_numpy(mask.astype(np.float32))[None])
    y = torch.from_numpy(kspace * mask)[None]
    z = torch.zeros(1, *kspace.shape[-2:], dtype=torch.complex64)
    mu = torch.tensor(0.05)
    rhs = operator.adjoint(y) + mu * z
    x = conjugate_gradient(operator, rhs, mu, z, 40)
    residual = operator.normal(x) + mu * x - rhs
    assert float(residual.abs().norm() / rhs.abs().norm()) < 1e-3
    # consistency with the data: A x reproduces y on the acquired samples within the regularisation
    fit = (operator.forward(x) - y * torch.from_numpy(mask.astype(np.float32))).abs().norm() / y.abs().norm()
    assert float(fit) < 0.1


@pytest.mark.parametrize("shape", [(64, 56), (33, 20)])
@pytest.mark.parametrize("kind", ["rows", "columns", "poisson", "full"])
def test_the_normal_operator_is_the_adjoint_of_the_forward_model(shape, kind):
    """``normal`` (no centring shifts; a 1D FFT when the mask is the same along one axis) equals
    ``adjoint(forward(x))`` for line masks along either axis, 2D masks, full sampling, even and odd sizes."""
    import torch

    from FastMRReconLib.model.unrolled import SenseOperator

    rng = np.random.default_rng(2)
    mask = {
        "rows": lines_mask(shape, step=3, centre=8),
        "columns": lines_mask(shape[::-1], step=3, centre=8).T,
        "poisson": rng.random(shape) < 0.4,
        "full": np.ones(shape, bool),
    }[kind]
    maps = coil_sensitivities(shape, 4, seed=1).astype(np.complex64)
    image = (rng.standard_normal((2, *shape)) + 1j * rng.standard_normal((2, *shape))).astype(np.complex64)
    both_maps = torch.from_numpy(np.stack([maps, maps[::-1].copy()]))
    operator = SenseOperator(both_maps, torch.from_numpy(np.stack([mask, mask])))
    x = torch.from_numpy(image)
    expected = operator.adjoint(operator.forward(x))
    np.testing.assert_allclose(operator.normal(x).numpy(), expected.numpy(), atol=1e-5 * float(expected.abs().max()))


# -- coil compression ----------------------------------------------------------------------------------------------
def test_coil_compression_keeps_the_calibration_energy_and_the_noise():
    """Compressing 12 coils to 6 virtual coils keeps nearly all of the calibration block's energy, leaves the
    samples that were not acquired at zero, keeps white noise's SD (a unitary combination), and keeping every
    coil is an isometry."""
    from FastMRReconLib.kspace.coil_compression import compress_coils, compression_energy, compression_matrix

    kspace, _ = phantom_kspace(shape=(96, 96), coils=12, sigma=0.02, seed=4)
    mask = lines_mask(kspace.shape[-2:], step=2, centre=20)
    undersampled = kspace * mask
    box = calibration_box(mask)
    matrix = compression_matrix(undersampled, box, 6)
    virtual = compress_coils(undersampled, matrix)
    assert matrix.shape == (12, 6) and virtual.shape == (6, 96, 96) and virtual.dtype == np.complex64
    assert compression_energy(undersampled, box, matrix) > 0.99
    assert not virtual[:, ~mask].any()
    assert kspace_noise_sd(virtual, mask) == pytest.approx(kspace_noise_sd(undersampled, mask), rel=0.15)
    every = compress_coils(undersampled, compression_matrix(undersampled, box, 20))  # more than there are: all 12
    assert np.linalg.norm(every) == pytest.approx(np.linalg.norm(undersampled), rel=1e-5)
    with pytest.raises(InputError, match="at least 1"):
        compression_matrix(undersampled, box, 0)


# -- the unrolled network's regularisers ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(40, 40), (37, 29)])
def test_unet_regulariser_starts_as_the_identity_at_any_size(shape):
    """A new U-Net regulariser passes its complex input unchanged (its head starts at zero), for sizes that are
    not a multiple of 2**depth too; once trained (head perturbed) its output depends on the noise level."""
    import torch

    from FastMRReconLib.model.unrolled import UnrolledConfig, make_denoiser

    torch.manual_seed(0)
    denoiser = make_denoiser(UnrolledConfig(regulariser="unet", channels=4, depth=2, max_channels=8))
    image = torch.randn(2, *shape, dtype=torch.complex64)
    noise = torch.tensor([0.01, 0.1])
    with torch.no_grad():
        assert torch.equal(denoiser(image, noise), image)
        torch.nn.init.normal_(denoiser.unet.head.weight, std=0.1)
        for film in [*denoiser.unet.down_film, *denoiser.unet.merge_film]:
            torch.nn.init.normal_(film.weight, std=0.1)
        out = denoiser(image, noise)
        assert out.shape == image.shape and not torch.equal(out, image)
        assert not torch.allclose(out, denoiser(image, noise * 10))


def test_unet_regulariser_sees_farther_than_the_cnn():
    """Regular undersampling folds the image by rows/R pixels; the CNN regulariser (5 layers) sees 5 pixels either
    way, the U-Net (depth 3) tens: the gradient of one output pixel reaches an input pixel 20 rows away only
    through the U-Net."""
    import torch

    from FastMRReconLib.model.unrolled import UnrolledConfig, make_denoiser

    torch.manual_seed(0)
    reach = {}
    for regulariser in ("cnn", "unet"):
        denoiser = make_denoiser(UnrolledConfig(regulariser=regulariser, channels=4, layers=5, depth=3))
        for module in denoiser.modules():  # leave the identity start: any weights will do
            if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=0.3)
        image = torch.randn(1, 64, 64, dtype=torch.complex64, requires_grad=True)
        denoiser(image, torch.tensor([0.05]))[0, 32, 32].real.backward()
        gradient = image.grad[0].abs()
        reach[regulariser] = (float(gradient[52, 32]), float(gradient[32 + 6 :, :].sum() + gradient[:, 32 + 6 :].sum()))
    assert reach["cnn"] == (0.0, 0.0)
    assert reach["unet"][0] > 0


def test_unknown_regulariser_is_refused():
    from FastMRReconLib.model.unrolled import UnrolledConfig, make_denoiser

    with pytest.raises(InputError, match="unknown regulariser 'vit'"):
        make_denoiser(UnrolledConfig(regulariser="vit"))


def test_data_consistency_weight_per_unroll_and_noise_level():
    """One shared mu: the same for every unroll and image. noise_mu: it starts at initial_mu everywhere, then each
    unroll has its own, growing with the noise SD when its slope is positive; gradients reach both parameters."""
    import torch

    from FastMRReconLib.model.unrolled import UnrolledConfig, UnrolledNetwork

    noise = torch.tensor([1e-3, 1e-2, 1e-1])
    shared = UnrolledNetwork(UnrolledConfig(unrolls=3, channels=4, layers=3, initial_mu=0.4))
    weights = shared.data_weights(noise)
    assert weights.shape == (3, 3, 1, 1) and torch.allclose(weights, torch.tensor(0.4))
    network = UnrolledNetwork(UnrolledConfig(unrolls=3, channels=4, layers=3, initial_mu=0.4, noise_mu=True))
    assert torch.allclose(network.data_weights(noise), torch.tensor(0.4))
    with torch.no_grad():
        network.raw_mu.copy_(torch.tensor([-1.0, 0.0, 1.0]))
        network.mu_slope.fill_(2.0)
    weights = network.data_weights(noise)[..., 0, 0]
    assert torch.all(weights[:, 1:] > weights[:, :-1])  # more noise, more weight on the prior
    assert torch.all(weights[1:] > weights[:-1])  # each unroll its own
    kspace, _ = phantom_kspace()
    mask = lines_mask(kspace.shape[-2:])
    maps = box_coil_maps(kspace * mask, calibration_box(mask))
    tensors = [torch.from_numpy(np.ascontiguousarray(a))[None] for a in (kspace * mask, maps, mask.astype(np.float32))]
    start = torch.sum(tensors[1].conj() * tensors[0], dim=1)  # any start will do
    network(start, tensors[0], tensors[1], tensors[2], torch.tensor([0.02])).abs().sum().backward()
    assert float(network.raw_mu.grad.abs().min()) > 0 and float(network.mu_slope.grad.abs().min()) > 0
