"""Tests of monai_anomaly.metrics.separation: score separation (means, standard deviations, Cohen's d)."""

from __future__ import annotations

import numpy as np
import pytest

from monai_anomaly.metrics.separation import score_separation


def test_score_separation():
    sep = score_separation([0, 0, 1, 1, -1], [0.0, 2.0, 4.0, 6.0, 100.0])
    assert sep["mean_normal"] == 1.0 and sep["mean_anomalous"] == 5.0
    assert sep["cohens_d"] == pytest.approx(4.0 / np.sqrt(2.0))
    assert score_separation([0, 0], [1.0, 2.0])["cohens_d"] is None
