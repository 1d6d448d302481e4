"""Tests of monai_anomaly.reports.writer: all report files, overwrite protection, label-free runs."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from monai_anomaly.metrics.thresholds import Threshold, fit_threshold
from monai_anomaly.reports.writer import evaluate_scores, write_report
from monai_anomaly.utils.errors import BadInputError, SkipLog


def _run(seed: int = 0):
    """6 volumes x 4 slices; volumes 3-5 anomalous; slice 3 of every volume unlabelled (-1)."""
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(6):
        lab = int(v >= 3)
        for s in range(4):
            rows.append(
                {
                    "path": f"/data/vol{v}.nii.gz",
                    "volume_id": f"vol{v}",
                    "slice_index": s,
                    "label": lab if s != 3 else -1,
                    "score": float(rng.normal(2.0 * lab, 0.7)),
                }
            )
    return rows


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_full_report(tmp_path):
    rows = _run()
    rng = np.random.default_rng(1)
    thr = fit_threshold(rng.normal(0, 0.7, 50), method="mean_std", k=2.0, split="val")
    img = rng.random((32, 32))
    panels = {i: (img, img * 0.8, np.abs(img * 0.2)) for i in range(len(rows))}
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = [10, -20, 5]
    vmap = rng.random((16, 16, 4)).astype(np.float32)
    skip = SkipLog(skip_bad=True)
    skip.handle(BadInputError("/data/broken.nii.gz", "contains NaN voxels"))
    out_dir = tmp_path / "report"
    res = write_report(
        out_dir,
        rows,
        threshold=thr,
        aggregation="max",
        skipped=skip,
        panels=panels,
        volume_maps={"vol0": (vmap, affine)},
        run_info={"method": "autoencoder"},
        top_k=3,
    )
    expected = {
        "detailed_results.csv",
        "volume_results.csv",
        "metrics.json",
        "anomaly_report.txt",
        "roc_curve.png",
        "pr_curve.png",
        "score_distribution.png",
        "confusion_matrix.png",
        "top_anomaly_1.png",
        "top_anomaly_2.png",
        "top_anomaly_3.png",
        "anomaly_map_vol0.nii.gz",
    }
    assert {p.name for p in out_dir.iterdir()} == expected
    assert set(res["files"]) == expected

    # detailed CSV: one row per slice, same values as the input, prediction = score >= threshold
    det = _read_csv(out_dir / "detailed_results.csv")
    assert len(det) == len(rows)
    for r, d in zip(rows, det):
        assert d["path"] == r["path"] and d["volume_id"] == r["volume_id"]
        assert int(d["slice_index"]) == r["slice_index"] and int(d["label"]) == r["label"]
        assert float(d["score"]) == pytest.approx(r["score"])
        assert int(d["prediction"]) == int(r["score"] >= thr.value)

    # volume CSV: max aggregation, label = max of known slice labels
    vol = _read_csv(out_dir / "volume_results.csv")
    assert [v["volume_id"] for v in vol] == [f"vol{i}" for i in range(6)]
    for v in vol:
        mine = [r["score"] for r in rows if r["volume_id"] == v["volume_id"]]
        assert int(v["n_slices"]) == 4
        assert float(v["volume_score"]) == pytest.approx(max(mine))
        assert int(v["label"]) == int(v["volume_id"] >= "vol3")

    # metrics: -1 slices excluded, values as sklearn
    m = json.loads((out_dir / "metrics.json").read_text())
    known = [r for r in rows if r["label"] >= 0]
    assert m["slice"]["n_labelled"] == 18 and m["slice"]["n_unlabelled"] == 6
    assert m["slice"]["metrics"]["auroc"] == pytest.approx(
        roc_auc_score([r["label"] for r in known], [r["score"] for r in known])
    )
    assert m["volume"]["metrics"]["n"] == 6
    assert m["threshold"] == thr.to_dict() and m["threshold"]["split"] == "val"
    assert m["skipped_files"] == [{"path": "/data/broken.nii.gz", "problem": "contains NaN voxels"}]
    assert m["run_info"]["method"] == "autoencoder"
    assert m["score_separation"]["slice"]["n_normal"] == 9 and m["score_separation"]["slice"]["cohens_d"] > 1

    text = (out_dir / "anomaly_report.txt").read_text()
    for needle in ("AUROC", "mean_std", "fitted on split 'val'", "Cohen's d", "/data/broken.nii.gz: contains NaN"):
        assert needle in text

    for name in ("roc_curve.png", "pr_curve.png", "score_distribution.png"):
        with Image.open(out_dir / name) as im:
            assert im.size == (500, 400)
    with Image.open(out_dir / "confusion_matrix.png") as im:
        assert im.size == (1000, 400)  # slice and volume level side by side
    assert "confusion_matrix.png" in text and "training_curves.png" not in text  # no training logs given
    assert "training_logs" not in m
    with Image.open(out_dir / "top_anomaly_1.png") as im:
        assert im.size == (1200, 340)

    nii = nib.load(str(out_dir / "anomaly_map_vol0.nii.gz"))
    np.testing.assert_allclose(nii.affine, affine)
    np.testing.assert_allclose(nii.get_fdata(), vmap, atol=1e-6)


def test_panels_are_the_highest_scores(tmp_path):
    rows = _run()
    asked = []

    def panels(row):
        asked.append(row["score"])
        return np.zeros((8, 8)), None, np.ones((8, 8))

    write_report(tmp_path / "r", rows, panels=panels, top_k=2)
    assert asked == sorted((r["score"] for r in rows), reverse=True)[:2]
    assert (tmp_path / "r" / "top_anomaly_2.png").exists() and not (tmp_path / "r" / "top_anomaly_3.png").exists()


def test_overwrite_protection(tmp_path):
    rows = _run()
    out = tmp_path / "r"
    write_report(out, rows, panels={0: (np.zeros((8, 8)), None, np.ones((8, 8)))})
    with pytest.raises(FileExistsError, match=str(out)):
        write_report(out, rows)
    res = write_report(out, rows[:8], overwrite=True)  # no panels now: the stale one is removed
    assert not (out / "top_anomaly_1.png").exists()
    assert len(_read_csv(out / "detailed_results.csv")) == 8
    assert res["slice"]["metrics"] is None  # volumes 0-1 are normal only


def test_label_free_run_has_report_without_metrics(tmp_path):
    rows = [{"path": f"/x/{i}.png", "score": s} for i, s in enumerate([0.1, 0.5, 0.3])]
    res = write_report(tmp_path / "r", rows, threshold=0.4)
    out = tmp_path / "r"
    assert not (out / "roc_curve.png").exists() and not (out / "pr_curve.png").exists()
    assert not (out / "confusion_matrix.png").exists()  # a threshold but no labels: no confusion matrix
    assert (out / "score_distribution.png").exists()
    m = json.loads((out / "metrics.json").read_text())
    assert m["slice"]["metrics"] is None and "no labelled slices" in m["slice"]["skipped_reason"]
    assert m["slice"]["n_predicted_anomalous"] == 1
    assert m["threshold"]["method"] == "manual"
    text = (out / "anomaly_report.txt").read_text()
    assert "metrics skipped: no labelled slices" in text
    assert [d["prediction"] for d in _read_csv(out / "detailed_results.csv")] == ["0", "1", "0"]
    assert res["volume"]["n"] == 3  # one volume per 2D file


def test_one_class_skips_metrics_with_reason(tmp_path):
    res = write_report(tmp_path / "r", [{"score": s, "label": 0} for s in (0.1, 0.2)])
    assert res["slice"]["metrics"] is None
    assert "all 2 labelled slices are normal (0)" in res["slice"]["skipped_reason"]
    assert "need both classes" in (tmp_path / "r" / "anomaly_report.txt").read_text()
    res = write_report(tmp_path / "t", [{"score": s, "label": 0} for s in (0.1, 0.2)], threshold=0.15)
    assert not (tmp_path / "t" / "confusion_matrix.png").exists() and "confusion_matrix.png" not in res["files"]


def test_calibrated_and_nonfinite_scores(tmp_path):
    rows = [
        {"score": 0.1, "label": 0, "calibrated_score": 0.2},
        {"score": float("nan"), "label": 1, "calibrated_score": 0.9},
        {"score": 0.9, "label": 1, "calibrated_score": 0.99},
        {"score": 0.2, "label": 0, "calibrated_score": 0.4},
    ]
    res = write_report(tmp_path / "r", rows)
    det = _read_csv(tmp_path / "r" / "detailed_results.csv")
    assert [float(d["calibrated_score"]) for d in det] == [0.2, 0.9, 0.99, 0.4]
    assert res["slice"]["n_nonfinite"] == 1 and res["slice"]["metrics"]["n"] == 3
    json.loads((tmp_path / "r" / "metrics.json").read_text())  # strict JSON despite the NaN


def test_evaluate_scores_from_arrays_and_csv(tmp_path):
    rows = _run()
    res = evaluate_scores(
        scores=[r["score"] for r in rows],
        labels=[r["label"] for r in rows],
        volume_ids=[r["volume_id"] for r in rows],
        paths=[r["path"] for r in rows],
        slice_indices=[r["slice_index"] for r in rows],
        output_dir=tmp_path / "a",
        threshold=Threshold(1.0, "percentile", "val", {"q": 95.0}),
    )
    # an earlier detailed_results.csv is a valid input
    res2 = evaluate_scores(csv_path=tmp_path / "a" / "detailed_results.csv", output_dir=tmp_path / "b", threshold=1.0)
    assert res2["slice"]["metrics"]["auroc"] == pytest.approx(res["slice"]["metrics"]["auroc"])
    assert res2["volume"]["metrics"]["auroc"] == pytest.approx(res["volume"]["metrics"]["auroc"])
    assert res2["run_info"]["source"].endswith("detailed_results.csv")
    with pytest.raises(ValueError, match="either scores"):
        evaluate_scores(output_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="3 scores but 2 label"):
        evaluate_scores([0.1, 0.2, 0.3], labels=[0, 1], output_dir=tmp_path / "c")


def test_slices_not_scored_are_listed_with_their_reason_and_left_out_of_the_metrics(tmp_path):
    from monai_anomaly.reports.tables import read_scores_csv

    rows = [
        {"volume_id": "v", "slice_index": i, "label": int(i >= 2), "score": float(i), "path": "v.nii.gz"}
        for i in range(1, 4)
    ]
    skipped = [
        {"path": "v.nii.gz", "volume_id": "v", "slice_index": 0, "label": 0, "foreground_fraction": 0.0,
         "skip_reason": "no foreground"},
        {"path": "v.nii.gz", "volume_id": "v", "slice_index": 4, "label": 1, "foreground_fraction": 0.002,
         "skip_reason": "foreground 0.20 % of the slice, below min_foreground 0.50 %"},
    ]  # fmt: skip
    out = write_report(tmp_path / "r", rows, skipped_slices=skipped)
    with open(tmp_path / "r" / "detailed_results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["slice_index"] for r in table] == ["1", "2", "3", "0", "4"]
    assert [r["skip_reason"] for r in table] == ["", "", "", "no foreground", skipped[1]["skip_reason"]]
    assert table[3]["score"] == "" and table[4]["prediction"] == ""
    assert out["slice"]["metrics"]["n"] == 3  # the metrics count scored slices only
    assert out["skipped_slices"] == {
        "n": 2,
        "n_labelled_anomalous": 1,
        "by_reason": {"no foreground": 1, "too little foreground (below min_foreground)": 1},
    }
    text = (tmp_path / "r" / "anomaly_report.txt").read_text()
    assert "2 slice(s) not scored" in text and "1 of them labelled anomalous" in text
    assert len(read_scores_csv(tmp_path / "r" / "detailed_results.csv")) == 3  # read back: the scored rows


def _tensorboard_logs(folder) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(log_dir=str(folder))
    for it in range(1, 41):
        w.add_scalar("train_loss", 1.0 / it, it)
    w.close()
    w = SummaryWriter(log_dir=str(folder))
    for epoch in range(1, 5):
        w.add_scalar("val_normal_loss", 0.5 / epoch, epoch)
        w.add_scalar("slice_auroc", 0.6 + 0.05 * epoch, epoch)
    w.close()


def test_confusion_matrix_is_drawn_at_the_threshold(tmp_path):
    rows = _run()
    thr = Threshold(1.0, "mean_std", "val", {"k": 3.0, "n": 40})
    res = write_report(tmp_path / "r", rows, threshold=thr, aggregation="max", volume_threshold=None)
    assert "confusion_matrix.png" in res["files"]
    with Image.open(tmp_path / "r" / "confusion_matrix.png") as im:
        assert im.format == "PNG" and im.size == (1000, 400)
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 10
    # no threshold: no predictions, no confusion matrix (ROC / PR are still drawn)
    res = write_report(tmp_path / "n", rows)
    assert (tmp_path / "n" / "roc_curve.png").exists() and not (tmp_path / "n" / "confusion_matrix.png").exists()
    # volumes of one class only (all anomalous): the slice level alone
    one = [r for r in rows if r["volume_id"] in ("vol2", "vol3", "vol4")]
    for r in one:
        r["label"] = 1 if r["volume_id"] != "vol2" or r["slice_index"] else 0
    for r in one:
        r["volume_id"] = "vol3" if r["volume_id"] == "vol2" else r["volume_id"]
    res = write_report(tmp_path / "s", one, threshold=thr)
    assert res["volume"]["metrics"] is None and res["slice"]["metrics"]["confusion_matrix"]
    with Image.open(tmp_path / "s" / "confusion_matrix.png") as im:
        assert im.size == (500, 400)


def test_training_curves_from_the_training_logs_only(tmp_path):
    run = tmp_path / "run"
    _tensorboard_logs(run / "logs")
    out = run / "eval"
    eval_writer_dir = out / "logs"  # the report handler's own writer: never read as training
    _tensorboard_logs(eval_writer_dir)
    res = write_report(out, _run(), threshold=1.0, training_log_dir=run / "logs")
    assert "training_curves.png" in res["files"]
    with Image.open(out / "training_curves.png") as im:
        assert im.format == "PNG" and im.size == (1000, 400)
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 10
    m = json.loads((out / "metrics.json").read_text())
    assert m["training_logs"]["log_dir"] == str(run / "logs")
    assert m["training_logs"]["tags"] == {
        "train_loss": ["train_loss"],
        "val_loss": ["val_normal_loss"],
        "val_auroc": ["slice_auroc"],
    }
    assert "training_curves.png" in m["files"]
    assert "training_curves.png: the loss and validation curves" in (out / "anomaly_report.txt").read_text()
    # a report's own logs are not a training run's, even when asked for
    _tensorboard_logs(tmp_path / "e2" / "logs")
    res = write_report(tmp_path / "e2", _run(), training_log_dir=tmp_path / "e2")
    assert "training_curves.png" not in res["files"] and not (tmp_path / "e2" / "training_curves.png").exists()


def test_no_training_logs_no_training_curves(tmp_path, caplog):
    import logging

    (tmp_path / "logs").mkdir()
    with caplog.at_level(logging.INFO, logger="monai_anomaly"):
        res = write_report(tmp_path / "r", _run(), training_log_dir=tmp_path / "logs")
    assert not (tmp_path / "r" / "training_curves.png").exists() and "training_curves.png" not in res["files"]
    assert "no training logs in" in caplog.text
    assert res["training_logs"]["not_drawn"].startswith("no training loss")
    assert "not drawn: no training loss" in (tmp_path / "r" / "anomaly_report.txt").read_text()
    res = write_report(tmp_path / "m", _run(), training_log_dir=tmp_path / "missing")  # a checkpoint from elsewhere
    assert not (tmp_path / "m" / "training_curves.png").exists()
    assert "figures_not_written" not in res


def test_aucp_at_test_time_refuses_too_few_subjects_and_cautions_on_few():
    from monai_anomaly.reports.writer import aucp_at_test_time

    # one normal validation volume against one evaluated volume: 0 or 1 by construction, so no value
    one = aucp_at_test_time({"slice": [0.1, 0.2, 0.3], "volume": [0.2]}, [0.15, 0.25, 0.9], [0.5])
    assert "value" not in one["subject"] and "1 known-normal vs 1 evaluated" in one["subject"]["skipped"]
    assert one["slice"]["value"] == pytest.approx(6 / 9) and "steps of 0.111" in one["slice"]["caution"]
    # enough on both sides: a value and no caution
    rng = np.random.default_rng(0)
    ref, ev = rng.normal(0, 1, 20), rng.normal(1, 1, 30)
    many = aucp_at_test_time({"slice": ref, "volume": ref[:6]}, ev, ev[:8])
    assert "caution" not in many["slice"] and "caution" not in many["subject"]
    assert 0.6 < many["slice"]["value"] <= 1.0 and many["subject"]["n_evaluated"] == 8
