"""monai_anomaly: unsupervised anomaly detection in medical images, built on MONAI."""

from __future__ import annotations

__version__ = "0.1.0"

from monai_anomaly.utils.config import print_config  # noqa: E402

__all__ = ["__version__", "print_config"]
