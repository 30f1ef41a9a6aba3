"""OSIPI TF2.4 IVIM reference signals (``../shared/data/osipi``) and OSIPI's own pass rule.

Tolerances are those of OSIPI's test suite (TF2.4_IVIM-MRI_CodeCollection, ``tests/IVIMmodels``): a fit
passes a region when |estimate - truth| <= atol + rtol |truth| for f, for D when f < 0.8 and for D* when
f > 0.03. Classic fits on the low-noise ``generic*.json`` use the default tolerances; the noisy
``generic_DL.json`` (noise SD 0.04) uses the looser ones OSIPI sets for its deep-learning test, and we hold
every method, classic or network, to those.
"""

from __future__ import annotations

import json

import numpy as np
from conftest import SHARED

TOLERANCES = {
    "classic": {"atol": {"f": 0.2, "D": 5e-4, "Dstar": 4e-2}, "rtol": {"f": 0.1, "D": 0.1, "Dstar": 0.3}},
    "deep_learning": {"atol": {"f": 0.2, "D": 8e-4, "Dstar": 8e-2}, "rtol": {"f": 0.2, "D": 0.3, "Dstar": 0.4}},
}
FILES = {"generic.json": "classic", "generic_brain.json": "classic", "generic_DL.json": "deep_learning"}


def cases(name: str) -> tuple[np.ndarray, dict]:
    """b-values (s/mm²) and the regions of an OSIPI file: {region: {"f", "D", "Dp", "data", ...}}."""
    data = json.loads((SHARED / "data" / "osipi" / name).read_text())
    return np.array(data.pop("config")["bvalues"], float), data


def signals(regions: dict) -> np.ndarray:
    return np.array([region["data"] for region in regions.values()], float)


def failures(maps: dict, regions: dict, name: str) -> list[str]:
    """Regions and parameters outside OSIPI's tolerance for file ``name``, as "region: key".."""
    tolerance = TOLERANCES[FILES[name]]
    out = []
    for index, (region, case) in enumerate(regions.items()):
        checks = [("f", case["f"])]
        if case["f"] < 0.8:
            checks.append(("D", case["D"]))
        if case["f"] > 0.03:
            checks.append(("Dstar", case["Dp"]))
        for key, true in checks:
            if abs(maps[key][index] - true) > tolerance["atol"][key] + tolerance["rtol"][key] * abs(true):
                out.append(f"{region}: {key} {maps[key][index]:.4g} vs {true:.4g}")
    return out
