"""Sample data: the head slab (MNI152 or SynthSeg) and the placenta IVIM phantom, as written files."""

from __future__ import annotations

import json

import numpy as np
from conftest import requires_shared

from FastMRICommon.volume_files import read_volume_array
from FastMRReconLib.anatomy.head_synthesis import (
    PROTOCOLS,
    TISSUES,
    Tissue,
    TissueMaps,
    label_tissue_maps,
    random_contrast,
    shared_synthseg_dir,
    synthesize,
)
from FastMRReconLib.sample_data import head_slab_maps, write_head_sample
from IVIMEstimatorLib.diffusion_series import read_series_array
from IVIMEstimatorLib.phantoms.phantom import LABELS, placenta_phantom
from IVIMEstimatorLib.sample_data import write_placenta_sample
from IVIMEstimatorLib.signal_model import ACQUIRED_BVALUES, ivim_signal


def test_contrasts_follow_mr_physics():
    wm, gm, csf = TISSUES["white matter"], TISSUES["grey matter"], TISSUES["CSF"]
    t1w, t2w, flair = PROTOCOLS["T1w"], PROTOCOLS["T2w"], PROTOCOLS["FLAIR"]
    assert t1w.signal(wm) > t1w.signal(gm) > t1w.signal(csf)
    assert t2w.signal(csf) > t2w.signal(gm) > t2w.signal(wm)
    assert flair.signal(csf) < 0.05 * flair.signal(gm)  # TI nulls CSF
    assert PROTOCOLS["PD"].signal(Tissue(0.5, 1000, 80)) < PROTOCOLS["PD"].signal(Tissue(1.0, 1000, 80))


def test_random_contrasts_draw_each_tissue_signal_and_keep_air_dark():
    thirds = np.zeros((3, 30, 30), np.float32)
    for index in range(3):
        thirds[index, 5:25, 5 + 7 * index : 12 + 7 * index] = 1.0  # three side-by-side tissue blocks, air around
    maps = TissueMaps(dict(zip(("white matter", "grey matter", "CSF"), thirds)), None)
    rng = np.random.default_rng(0)
    images = [random_contrast(maps, rng) for _ in range(20)]
    levels = np.array([[image[15, 8 + 7 * index] for index in range(3)] for image in images])
    assert np.allclose(levels.max(axis=1), 1.0)  # the brightest tissue is 1, as in synthesize
    assert all(image[0].max() == 0 and image[:, 0].max() == 0 for image in images)  # air stays 0
    orders = {tuple(np.argsort(row)) for row in levels}
    assert len(orders) >= 4  # tissues swap places: not one fixed contrast
    again = random_contrast(maps, np.random.default_rng(0))
    assert np.array_equal(again, images[0])
    textured = random_contrast(maps, np.random.default_rng(1), bias_strength=0.3, texture=0.05)
    assert textured[5:25, 5:12].std() > 0  # bias field and texture vary a tissue's signal


def test_head_sample_files_from_mni152(tmp_path):
    paths = write_head_sample(tmp_path, slices=4, source="mni152", coils=4)
    names = {path.name for path in paths}
    for contrast in PROTOCOLS:
        assert {f"head_{contrast}_truth.nrrd", f"head_{contrast}_full.nrrd", f"head_{contrast}_R2.nrrd"} <= names
    truth, geometry = read_volume_array(tmp_path / "head_T2w_truth.nrrd")
    full, full_geometry = read_volume_array(tmp_path / "head_T2w_full.nrrd")
    fast, fast_geometry = read_volume_array(tmp_path / "head_T2w_R2.nrrd")
    assert truth.shape == full.shape == fast.shape and truth.shape[0] == 4
    assert geometry.matches(full_geometry) and geometry.matches(fast_geometry)
    error_full, error_fast = np.abs(full - truth).mean(), np.abs(fast - truth).mean()
    assert error_fast > 1.5 * error_full  # aliasing plus twice the noise variance
    assert np.corrcoef(fast.ravel(), truth.ravel())[0, 1] > 0.85
    info = json.loads((tmp_path / "head_simulation.json").read_text())
    assert info["R2"]["averages"] == 1 and info["full"]["averages"] == 2 and "MNI152" in info["source"]


@requires_shared
def test_synthseg_maps_have_extra_cerebral_tissue():
    folder = shared_synthseg_dir()
    assert folder is not None
    maps = label_tissue_maps(sorted(folder.glob("*.nii.gz"))[0])
    assert {"bone", "skin", "fat", "muscle", "CSF", "white matter"} <= set(maps.fractions)
    image = synthesize(maps, PROTOCOLS["T1w"])
    middle = image[image.shape[0] // 2]
    assert middle.max() <= 1.0 and (middle > 0.05).mean() > 0.3  # a whole head, not just a brain
    slab, origin = head_slab_maps(slices=4, source="synthseg")
    assert "SynthSeg" in origin and slab.shape[0] == 4


def test_placenta_phantom_truth_and_noise():
    phantom = placenta_phantom(seed=1)
    series = phantom.series
    assert series.volumes.shape == (10, 15, 128, 128)
    np.testing.assert_array_equal(series.bvalues, ACQUIRED_BVALUES)
    placenta = phantom.labels == LABELS["placenta"]
    assert placenta.sum() > 5000
    assert 0.15 <= phantom.f[placenta].min() and phantom.f[placenta].max() <= 0.45
    assert 1.5e-3 <= phantom.D[placenta].min() and phantom.D[placenta].max() <= 2.2e-3
    assert 30e-3 <= phantom.Dstar[placenta].min() and phantom.Dstar[placenta].max() <= 120e-3
    residual = series.volumes[0][placenta] - phantom.S0[placenta]
    assert 25 < phantom.S0[placenta].mean() / residual.std() < 35  # SNR 30 at b = 0
    clean = ivim_signal(series.bvalues, phantom.f, phantom.D, phantom.Dstar, phantom.S0)
    decay = series.signals[placenta].mean(axis=0) / clean[placenta].mean(axis=0)
    np.testing.assert_allclose(decay, 1.0, atol=0.03)  # Rician bias small at these SNRs


def test_placenta_sample_files(tmp_path):
    paths = write_placenta_sample(tmp_path)
    assert all(path.is_file() for path in paths)
    from_nrrd = read_series_array(tmp_path / "placenta_dwi.seq.nrrd")
    from_nifti = read_series_array(tmp_path / "placenta_dwi.nii.gz")
    for series in (from_nrrd, from_nifti):
        np.testing.assert_array_equal(series.bvalues, [0, 10, 20, 50, 80, 100, 150, 200, 300, 500])
    np.testing.assert_allclose(from_nifti.volumes, from_nrrd.volumes)
    f, geometry = read_volume_array(tmp_path / "placenta_truth_f.nrrd")
    assert geometry.matches(from_nrrd.geometry) and f.shape == from_nrrd.volumes.shape[1:]
    assert json.loads((tmp_path / "placenta_sample.json").read_text())["snr_at_b0_in_placenta"] == 30.0
