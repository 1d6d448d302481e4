"""The tiny trained checkpoint of every bundle, trained once per session and shared by the bundle tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("_monai_anomaly_tests_conftest_bundles", REPO / "tests" / "conftest.py")
_CONF = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_CONF)


@pytest.fixture(scope="session", params=_CONF.bundle_names())
def trained_bundle(request, tmp_path_factory) -> Path:
    """Bundle ``request.param``, shrunk and trained for two epochs on a small part of the embedded sample (the
    autoencoder is the session fixture ``tiny_trained_bundle`` other test folders share)."""
    if request.param == "autoencoder_anomaly":
        return request.getfixturevalue("tiny_trained_bundle")
    tmp = tmp_path_factory.mktemp(request.param.replace(":", "_"))
    return _CONF.make_tiny_trained_bundle(tmp, name=request.param)
