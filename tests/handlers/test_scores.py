"""Tests of monai_anomaly.handlers.scores and .report on a tiny real AnomalyEvaluator."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from monai.data import DataLoader, MetaTensor

from monai_anomaly.engines.evaluator import AnomalyEvaluator
from monai_anomaly.handlers.report import AnomalyReportHandler
from monai_anomaly.handlers.scores import AnomalyScoreCollector
from monai_anomaly.metrics.thresholds import DecisionThresholds, Threshold
from monai_anomaly.networks.anomaly_net import AnomalyMapNet
from monai_anomaly.transforms.postprocessing import VolumeAnomalyScored
from monai_anomaly.utils.errors import BadInputError, SkipLog


class ClampNet(torch.nn.Module):
    """Identity-ish "autoencoder": reconstructs intensities up to 0.5 and misses anything brighter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 0.5)


def _items(n_volumes: int = 4, slices: int = 2, size: int = 16):
    """Slices of 2D volumes; volumes 2 and 3 are anomalous (a bright square on every slice)."""
    rng = np.random.default_rng(0)
    items = []
    for v in range(n_volumes):
        for s in range(slices):
            img = rng.random((1, size, size), dtype=np.float32) * 0.4
            lab = int(v >= n_volumes // 2)
            if lab:
                img[:, 4:8, 4:8] = 1.0
            items.append(
                {
                    "image": MetaTensor(torch.as_tensor(img), meta={"filename_or_obj": f"/d/v{v}__{s:03d}.png"}),
                    "label": lab,
                    "volume_id": f"v{v}",
                    "slice_index": s,
                }
            )
    return items


def _evaluator(handlers, items, decollate=True, score_method="max"):
    return AnomalyEvaluator(
        "cpu",
        DataLoader(items, batch_size=3, num_workers=0),
        AnomalyMapNet(ClampNet(), "abs"),
        score_method=score_method,
        val_handlers=handlers,
        decollate=decollate,
    )


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluator_collects_metrics_and_writes_report(tmp_path):
    items = _items()
    collector = AnomalyScoreCollector(keep_panels=3)
    skip = SkipLog(skip_bad=True)
    skip.handle(BadInputError("/d/bad.png", "unreadable PNG"))

    class FakeWriter:
        def __init__(self):
            self.scalars, self.images = {}, {}

        def add_scalar(self, tag, value, step):
            self.scalars[tag] = value

        def add_image(self, tag, img, step, dataformats):
            self.images[tag] = (img.shape, dataformats)

        def flush(self):
            pass

    tb = FakeWriter()
    thr = Threshold(0.3, "mean_std", "val", {"k": 3.0})
    report = AnomalyReportHandler(tmp_path / "report", collector, threshold=thr, skipped=skip, tensorboard_writer=tb)
    evaluator = _evaluator([collector, report], items)
    evaluator.run()

    m = evaluator.state.metrics
    assert m["slice_auroc"] == 1.0 and m["volume_auroc"] == 1.0 and m["slice_auprc"] == 1.0
    assert m["val_score_normal_mean"] == 0.0  # the clamp reconstructs normals exactly
    assert m["val_score_anomalous_mean"] == pytest.approx(0.5)
    assert m["val_score_mean"] == pytest.approx(0.25)

    rows = collector.slice_rows()
    assert len(rows) == len(items)
    assert [(r["volume_id"], r["slice_index"], r["label"]) for r in rows] == [
        (i["volume_id"], i["slice_index"], i["label"]) for i in items
    ]
    assert rows[0]["path"] == "/d/v0__000.png"
    assert len(collector.panels) == 3 and all(p[1] is not None for p in collector.panels.values())

    out = tmp_path / "report"
    det = _rows(out / "detailed_results.csv")
    assert [d["path"] for d in det] == [f"/d/v{v}__{s:03d}.png" for v in range(4) for s in range(2)]
    assert [int(d["prediction"]) for d in det] == [i["label"] for i in items]
    assert len(_rows(out / "volume_results.csv")) == 4
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["slice"]["metrics"]["sensitivity"] == 1.0 and metrics["volume"]["metrics"]["specificity"] == 1.0
    assert metrics["skipped_files"] == [{"path": "/d/bad.png", "problem": "unreadable PNG"}]
    assert metrics["run_info"]["iterations"] == 3
    for name in ("roc_curve.png", "pr_curve.png", "score_distribution.png", "top_anomaly_3.png", "anomaly_report.txt"):
        assert (out / name).exists()
    assert tb.scalars["report/slice_auroc"] == 1.0 and "report/volume_auroc" in tb.scalars
    assert tb.images["report/top_anomaly_1"][1] == "HWC"

    # a second run into the same folder is refused
    with pytest.raises(FileExistsError, match="report"):
        again = AnomalyScoreCollector()
        _evaluator([again, AnomalyReportHandler(out, again)], items).run()


def test_label_free_inference_and_batched_output(tmp_path):
    """decollate=False: state.output is a batched dict; unknown labels give no AUROC but a report."""
    items = _items()
    for i in items:
        i["label"] = -1
    collector = AnomalyScoreCollector()
    report = AnomalyReportHandler(tmp_path / "r", collector, threshold=0.3)
    ev = _evaluator([collector, report], items, decollate=False)
    ev.run()
    assert "slice_auroc" not in ev.state.metrics and ev.state.metrics["val_score_mean"] == pytest.approx(0.25)
    assert len(collector) == len(items) and collector.rows[-1]["volume_id"] == "v3"
    assert report.result["slice"]["metrics"] is None
    assert "no labelled slices" in (tmp_path / "r" / "anomaly_report.txt").read_text()


def test_collector_resets_every_epoch_and_needs_scores():
    c = AnomalyScoreCollector()
    c.update([{"score": 0.1, "label": 0}, {"score": 0.2, "label": 1}])
    assert c.compute()["slice_auroc"] == 1.0
    c.reset()
    assert len(c) == 0 and c.compute() == {}
    with pytest.raises(KeyError, match="has no 'score'"):
        c.update([{"image": torch.zeros(1, 4, 4), "anomaly_map": torch.zeros(1, 4, 4)}])  # never scores a map itself


def test_volume_results_give_slice_rows_and_nifti(tmp_path):
    affine = torch.diag(torch.tensor([0.7, 0.7, 3.0, 1.0]))
    c = AnomalyScoreCollector()
    post = VolumeAnomalyScored("pred", "mean", thresholds=DecisionThresholds(Threshold(0.1, "manual", "given"), 0.1))
    for v in range(2):
        m = MetaTensor(torch.zeros(1, 8, 8, 3), affine=affine, meta={"filename_or_obj": f"/d/vol{v}.nii.gz"})
        m[0, :, :, 1] = float(v)
        pred = {
            "anomaly_map": m.as_tensor(),
            "slice_scores": m.flatten(1, 2).mean(1)[0],
            "scored": torch.ones(3).bool(),
        }
        d = post({"pred": pred, "image": m, "label": v, "volume_id": f"vol{v}"})
        d["anomaly_map"] = d.pop("pred")
        c.update([d])
    assert [(r["volume_id"], r["slice_index"], r["score"]) for r in c.rows] == [
        ("vol0", 0, 0.0),
        ("vol0", 1, 0.0),
        ("vol0", 2, 0.0),
        ("vol1", 0, 0.0),
        ("vol1", 1, 1.0),
        ("vol1", 2, 0.0),
    ]
    assert c.compute()["volume_auroc"] == 1.0
    import nibabel as nib

    from monai_anomaly.reports.writer import write_report

    res = write_report(tmp_path / "r", c.slice_rows(), volume_maps=c.volume_maps)
    assert "anomaly_map_vol1.nii.gz" in res["files"]
    np.testing.assert_allclose(nib.load(str(tmp_path / "r" / "anomaly_map_vol1.nii.gz")).affine, affine.numpy())
