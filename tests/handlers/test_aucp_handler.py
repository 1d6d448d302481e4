from __future__ import annotations

import math

import pytest
import torch

from monai_anomaly.data.splits import transductive_items, unannotated_items
from monai_anomaly.handlers.aucp import MixedSetAUROC, PseudoAUCMetric
from monai_anomaly.metrics.aucp import debiased_auc


def test_unannotated_items_hide_the_label_and_keep_it_apart():
    items = [{"role": "mixed", "label": 1}, {"role": "mixed", "label": 0}, {"role": "normal", "label": 0}]
    out = unannotated_items(items)
    assert [(d["label"], d["true_label"]) for d in out] == [(-1, 1), (-1, 0)]
    assert items[0]["label"] == 1  # the input is not changed
    assert [d["label"] for d in transductive_items(items)] == [1, 0]
    with pytest.raises(ValueError, match="mixed"):
        transductive_items([{"role": "normal", "label": 0}])


def test_pseudo_auc_reads_decollated_and_batched_outputs():
    m = PseudoAUCMetric()
    m.update([{"score": torch.tensor(0.1), "role": "normal"}, {"score": torch.tensor(0.7), "role": "mixed"}])
    m.update({"score": torch.tensor([0.2, 0.05, 0.9]), "role": ["normal", "mixed", "mixed"]})
    # normals 0.1, 0.2; mixed 0.7, 0.05, 0.9: 4 of the 6 pairs ordered
    assert m.compute() == pytest.approx(4 / 6)
    d = PseudoAUCMetric(normal_fraction=0.5)
    d.update([{"score": 0.1, "role": "normal"}, {"score": 0.7, "role": "mixed"}, {"score": 0.05, "role": "mixed"}])
    assert d.compute() == pytest.approx(debiased_auc(0.5, 0.5))
    with pytest.raises(ValueError, match="known-healthy and unannotated"):
        e = PseudoAUCMetric()
        e.update([{"score": 0.1, "role": "normal"}])
        e.compute()


def test_mixed_set_auroc_uses_only_the_hidden_labels_of_mixed_samples():
    m = MixedSetAUROC()
    m.update(
        [
            {"score": 0.9, "role": "mixed", "true_label": 1},
            {"score": 0.2, "role": "mixed", "true_label": 0},
            {"score": 5.0, "role": "normal", "true_label": 0},  # not part of the mixed set
            {"score": 0.1, "role": "mixed", "true_label": 1},
        ]
    )
    assert m.compute() == pytest.approx(0.5)
    empty = MixedSetAUROC()
    empty.update([{"score": 0.3, "role": "mixed"}])
    assert math.isnan(empty.compute())
