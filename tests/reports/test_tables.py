"""Tests of monai_anomaly.reports.tables: reading a score CSV back."""

from __future__ import annotations

import pytest

from monai_anomaly.reports.tables import read_scores_csv
from monai_anomaly.utils.errors import BadInputError


def test_bad_csv(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("path,value\na.png,0.3\n")
    with pytest.raises(BadInputError, match="needs a 'score' column"):
        read_scores_csv(p)
    p.write_text("path,score\na.png,high\n")
    with pytest.raises(BadInputError, match="line 2"):
        read_scores_csv(p)
