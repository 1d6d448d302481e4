"""Sharing work over ranks and merging what they collected: the pieces of distributed evaluate / infer that can be
checked in one process (the two-process runs are in tests/test_cohort_inference.py)."""

from __future__ import annotations

import numpy as np

import monai_anomaly.handlers.scores as scores_mod
from monai_anomaly.handlers.scores import AnomalyScoreCollector
from monai_anomaly.utils.dist import shard_by_volume


def test_shards_are_contiguous_whole_volumes_covering_everything_once():
    items = [{"volume_id": f"v{i // 3}", "slice": i} for i in range(3 * 7)]  # 7 volumes of 3 slices
    for world in (1, 2, 3, 4, 8):
        parts = [shard_by_volume(items, r, world) for r in range(world)]
        assert [it for p in parts for it in p] == items  # in order, nothing lost or repeated
        owners = {}
        for r, p in enumerate(parts):
            for it in p:
                owners.setdefault(it["volume_id"], set()).add(r)
        assert all(len(o) == 1 for o in owners.values())  # a volume never split over ranks
        sizes = [len({it["volume_id"] for it in p}) for p in parts]
        assert max(sizes) - min(sizes) <= 1
    assert [len(shard_by_volume(items[:3], r, 2)) for r in range(2)] == [0, 3]  # one volume, two ranks: one has none


def _item(vid: str, s: int, score: float) -> dict:
    rng = np.random.default_rng(int(score * 1000))
    return {
        "volume_id": vid,
        "slice_index": s,
        "label": int(vid >= "v2"),
        "score": score,
        "image": rng.random((1, 8, 8)).astype(np.float32),
        "anomaly_map": rng.random((1, 8, 8)).astype(np.float32),
    }


def test_collectors_of_two_ranks_gathered_equal_one_collector(monkeypatch):
    items = [_item(f"v{v}", s, float(sc)) for v, (s, sc) in enumerate([(0, 0.3), (0, 0.9), (0, 0.5), (0, 0.9)])]
    items += [_item("v4", 1, 0.7), _item("v5", 0, 0.1)]
    one = AnomalyScoreCollector(keep_panels=3)
    one.update(items)
    parts = [AnomalyScoreCollector(keep_panels=3) for _ in range(2)]
    for r, c in enumerate(parts):
        c.update(shard_by_volume(items, r, 2))
    monkeypatch.setattr(scores_mod, "rank_world", lambda: (0, 2))
    states = [(c.rows, c._panels, list(c.volume_maps.items())) for c in parts]
    monkeypatch.setattr(scores_mod, "gather_in_rank_order", lambda obj: states)
    parts[0].gather()
    assert parts[0].rows == one.rows
    assert sorted(parts[0].panels) == sorted(one.panels)  # the same rows' panels (equal scores: the earliest)
    for i, (_img, _rec, m) in one.panels.items():
        np.testing.assert_array_equal(parts[0].panels[i][2], m)
    assert parts[0].compute() == one.compute()
