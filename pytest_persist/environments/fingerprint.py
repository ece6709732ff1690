"""Where a model was saved and loaded: the environment fingerprint.

Versions come from ``importlib.metadata``: nothing here imports scikit-learn or numpy.
"""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["FINGERPRINT_DISTRIBUTIONS", "environment_fingerprint"]

#: Distributions whose versions are recorded when installed, in this order.
FINGERPRINT_DISTRIBUTIONS: tuple[str, ...] = (
    "scikit-learn",
    "numpy",
    "scipy",
    "joblib",
    "cloudpickle",
    "skops",
    "skl2onnx",
    "onnxruntime",
    "pandas",
    "pytest-persist",
)


def environment_fingerprint() -> dict[str, str]:
    """Python, platform and the versions of the libraries that decide whether a model loads.

    Keys: ``python``, ``implementation``, ``platform``, ``machine``, then one per installed
    distribution of ``FINGERPRINT_DISTRIBUTIONS`` (missing ones are left out).
    """
    fingerprint = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    for distribution in FINGERPRINT_DISTRIBUTIONS:
        try:
            fingerprint[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return fingerprint
