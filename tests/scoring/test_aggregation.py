"""Tests for monai_anomaly.scoring.aggregation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_anomaly.scoring.aggregation import aggregate_by_volume, aggregate_scores

SLICES = [0.1, 0.4, 0.2, 0.9, 0.3]


@pytest.mark.parametrize(
    "method, kw, want",
    [
        ("mean", {}, 0.38),
        ("max", {}, 0.9),
        ("topk", {"k": 0.4}, 0.65),  # top 2 of 5: 0.9, 0.4
        ("topk", {"k": 0.1}, 0.9),  # ceil(0.5) = 1 slice
        ("topk", {"k": 1.0}, 0.38),
        ("percentile", {"q": 50}, 0.3),
        ("percentile", {"q": 90}, float(np.percentile(SLICES, 90))),
        ("fraction_above", {"threshold": 0.3}, 0.6),  # 0.4, 0.9, 0.3 (>=)
        ("fraction_above", {"threshold": 1.0}, 0.0),
    ],
)
def test_aggregate_scores_hand_values(method, kw, want):
    assert aggregate_scores(SLICES, method, **kw) == pytest.approx(want)
    assert aggregate_scores(torch.tensor(SLICES), method, **kw) == pytest.approx(want)
    assert isinstance(aggregate_scores(np.array(SLICES), method, **kw), float)


def test_aggregate_scores_errors():
    with pytest.raises(ValueError, match="threshold"):
        aggregate_scores(SLICES, "fraction_above")
    with pytest.raises(ValueError, match="method"):
        aggregate_scores(SLICES, "median")
    with pytest.raises(ValueError, match="empty"):
        aggregate_scores([], "mean")
    with pytest.raises(ValueError, match=r"1 NaN/Inf value\(s\) at indices \[2\]"):
        aggregate_scores([0.1, 0.2, float("nan")], "mean")
    with pytest.raises(ValueError, match="k must"):
        aggregate_scores(SLICES, "topk", k=1.5)


def test_aggregate_by_volume_table():
    # interleaved slices of three volumes, as a shuffled DataLoader would give them
    ids = ["p2", "p1", "p2", "p3", "p1", "p2"]
    scores = [0.5, 0.1, 0.7, 0.2, 0.3, 0.6]
    labels = [1, 0, 0, -1, 0, 1]
    rows = aggregate_by_volume(ids, scores, labels, method="max")
    assert [r["volume_id"] for r in rows] == ["p2", "p1", "p3"]
    assert [r["volume_score"] for r in rows] == pytest.approx([0.7, 0.3, 0.2])
    assert [r["n_slices"] for r in rows] == [3, 2, 1]
    assert [r["label"] for r in rows] == [1, 0, -1]
    assert set(rows[0]) == {"volume_id", "volume_score", "n_slices", "label"}

    rows = aggregate_by_volume(ids, torch.tensor(scores), method="fraction_above", threshold=0.55)
    assert [r["volume_score"] for r in rows] == pytest.approx([2 / 3, 0.0, 0.0])
    assert [r["label"] for r in rows] == [-1, -1, -1]


def test_aggregate_by_volume_plain_ids_and_errors():
    rows = aggregate_by_volume(np.array([3, 3, 4]), [1.0, 3.0, 2.0], method="mean")
    assert rows[0]["volume_id"] == 3 and type(rows[0]["volume_id"]) is int
    assert rows[0]["volume_score"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="3 volume ids but 2 scores"):
        aggregate_by_volume(["a", "a", "b"], [0.1, 0.2])
    with pytest.raises(ValueError, match="labels"):
        aggregate_by_volume(["a", "b"], [0.1, 0.2], labels=[0])
    with pytest.raises(ValueError, match="volume 'b'"):
        aggregate_by_volume(["a", "b"], [0.1, float("inf")])
