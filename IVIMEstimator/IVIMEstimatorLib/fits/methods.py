"""The IVIM estimation methods by name (torch-free, so that the Slicer module can list them before torch is
installed): three networks (by their architecture names) and two classic fits."""

#: Network methods and the architecture (``networks.REGISTRY`` key) each one uses: the trainable methods.
METHOD_ARCHITECTURE = {"scdnn": "ScdnnNet", "mlp": "MlpNet", "ivimnet": "IvimNet"}
#: All methods of ``estimate.fit``: the networks, segmented NLLS and the Bayesian fit.
METHODS = (*METHOD_ARCHITECTURE, "nlls", "bayes")


def needs_torch(method: str) -> bool:
    """True when ``method`` runs on torch: the networks and the Bayes grid (``nlls`` alone runs on numpy)."""
    return method != "nlls"
