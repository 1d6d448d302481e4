"""Version information of monai_anomaly and everything it uses."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import TextIO

__all__ = ["get_config_values", "print_config"]

_PACKAGES = (
    "monai",
    "torch",
    "pytorch-ignite",
    "numpy",
    "nibabel",
    "pydicom",
    "SimpleITK",
    "Pillow",
    "scikit-learn",
    "scipy",
    "tensorboard",
    "matplotlib",
    "PyYAML",
    "fire",
    "tqdm",
    "monailabel",
)


def get_config_values() -> dict[str, str]:
    """Return ``{name: version}`` for monai_anomaly, Python, the platform and every dependency."""
    from monai_anomaly.utils.version import __version__

    values = {"monai_anomaly": __version__, "Python": sys.version.split()[0], "Platform": platform.platform()}
    for name in _PACKAGES:
        try:
            values[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            values[name] = "NOT INSTALLED"
    try:
        import torch

        values["CUDA available"] = str(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        pass
    return values


def print_config(file: TextIO | None = None) -> None:
    """Print the versions of monai_anomaly and of every package it uses."""
    for k, v in get_config_values().items():
        print(f"{k}: {v}", file=file or sys.stdout)
