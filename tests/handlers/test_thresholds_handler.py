"""Tests of monai_anomaly.handlers.thresholds: ThresholdFitter on a real evaluator, its checkpoint state, reading it
back."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.handlers import CheckpointLoader, CheckpointSaver

from monai_anomaly.engines.evaluator import AnomalyEvaluator
from monai_anomaly.handlers.thresholds import ThresholdFitter, load_fitted_threshold, load_volume_threshold
from monai_anomaly.networks.anomaly_net import AnomalyMapNet
from monai_anomaly.utils.errors import BadInputError

sys.path.insert(0, str(Path(__file__).parent))

from tiny_trainer import SIZE  # noqa: E402
from tiny_trainer import tiny_trainer as _trainer  # noqa: E402


class HalfNet(torch.nn.Module):
    """Reconstructs x as x / 2: the mean-abs map score of an image is mean(x) / 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5


def _items(normal_levels, anomalous_levels=(), unknown_levels=()):
    items = []
    for level, label in (
        [(v, 0) for v in normal_levels] + [(v, 1) for v in anomalous_levels] + [(v, -1) for v in unknown_levels]
    ):
        items.append({"image": torch.full((1, SIZE, SIZE), float(level)), "label": label, "volume_id": f"{level}"})
    return items


def _run(fitter, items):
    loader = DataLoader(Dataset(items), batch_size=3, shuffle=False, num_workers=0)
    ev = AnomalyEvaluator("cpu", loader, AnomalyMapNet(HalfNet()), score_method="mean", val_handlers=[fitter])
    ev.run()
    return ev


def test_fits_mean_std_on_normal_slices_only():
    normal = [0.2, 0.3, 0.4, 0.5, 0.6]
    fitter = ThresholdFitter("mean_std", k=2.0)
    ev = _run(fitter, _items(normal, anomalous_levels=[1.8, 2.0], unknown_levels=[3.0]))
    scores = np.asarray(normal) / 2
    expected = scores.mean() + 2.0 * scores.std()
    thr = fitter.threshold
    assert thr.value == pytest.approx(expected, rel=1e-5)
    assert thr.method == "mean_std" and thr.split == "val" and thr.params["n"] == 5
    assert ev.state.metrics["val_threshold"] == pytest.approx(expected, rel=1e-5)
    assert fitter.calibrator.n_samples == 5 and fitter.calibrator.split == "val"
    assert fitter.calibrator(0.5) == 1.0 and fitter.calibrator(0.0) == 0.0
    assert fitter.fitted_epoch == 1


def test_percentile_and_refit_each_run():
    fitter = ThresholdFitter("percentile", q=50.0)
    _run(fitter, _items([0.2, 0.4, 0.6]))
    assert fitter.threshold.value == pytest.approx(0.2)
    _run(fitter, _items([1.0, 1.2, 1.4]))  # a new validation run replaces the fit (scores reset each epoch)
    assert fitter.threshold.value == pytest.approx(0.6)
    assert fitter.threshold.params["n"] == 3


def test_no_normals_keeps_previous_fit(caplog):
    fitter = ThresholdFitter()
    _run(fitter, _items([0.2, 0.4]))
    before = fitter.threshold
    with caplog.at_level(logging.WARNING, logger="monai_anomaly"):
        _run(fitter, _items([], anomalous_levels=[1.0, 2.0]))
    assert fitter.threshold is before
    assert "no normal" in caplog.text


def test_assume_normal_for_unlabelled_batches():
    fitter = ThresholdFitter("percentile", q=100.0, assume_normal=True)
    fitter.update({"score": torch.tensor([0.1, 0.7])})
    assert fitter.fit().value == pytest.approx(0.7)
    strict = ThresholdFitter()
    strict.update({"score": torch.tensor([0.1, 0.7])})
    assert strict.fit() is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="never fitted on the test set"):
        ThresholdFitter(split="test")
    with pytest.raises(ValueError, match="method must be one of"):
        ThresholdFitter("youden")


def test_state_dict_roundtrip_weights_only(tmp_path):
    fitter = ThresholdFitter("mean_std", k=1.0)
    _run(fitter, _items([0.2, 0.4, 0.8], anomalous_levels=[3.0]))
    path = tmp_path / "ckpt.pt"
    torch.save({"threshold": fitter.state_dict()}, path)
    restored = ThresholdFitter()
    restored.load_state_dict(torch.load(path, weights_only=True)["threshold"])
    assert restored.threshold == fitter.threshold
    probe = torch.tensor([0.05, 0.15, 0.35])
    assert torch.allclose(restored.calibrator(probe), fitter.calibrator(probe))
    thr, cal = load_fitted_threshold(path)
    assert thr == fitter.threshold and cal.n_samples == 3
    empty = ThresholdFitter()
    empty.load_state_dict(ThresholdFitter().state_dict())  # an unfitted fitter saves and loads too
    assert empty.threshold is None and empty.calibrator is None
    with pytest.raises(BadInputError, match="no 'thr' entry"):
        load_fitted_threshold(path, key="thr")


def test_saved_and_restored_with_monai_checkpoint_handlers(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    trainer, opt = _trainer(net)
    fitter = ThresholdFitter()
    fitter.update([{"score": 0.1, "label": 0}, {"score": 0.3, "label": 0}])
    fitter.fit()
    CheckpointSaver(str(tmp_path), {"network": net, "trainer": trainer, "threshold": fitter}, save_final=True).attach(
        trainer
    )
    trainer.run()
    ckpt = next(tmp_path.glob("*.pt"))

    net2 = torch.nn.Conv2d(1, 1, 3, padding=1)
    trainer2, _ = _trainer(net2, max_epochs=3)
    fitter2 = ThresholdFitter()
    CheckpointLoader(str(ckpt), {"network": net2, "threshold": fitter2}).attach(trainer2)  # weights_only load
    trainer2.add_event_handler(Events.STARTED, lambda e: e.terminate())
    trainer2.run()
    assert fitter2.threshold == fitter.threshold
    assert torch.equal(net2.weight, net.weight)


class NotPlain:
    """An object that is not plain data: a checkpoint holding it is not loaded."""


def test_unloadable_checkpoints_name_the_file_and_never_load_unsafely(tmp_path):
    bad = tmp_path / "model.pt"
    torch.save({"threshold": ThresholdFitter().state_dict(), "extra": NotPlain()}, bad)
    for load in (load_fitted_threshold, load_volume_threshold):
        with pytest.raises(BadInputError, match=r"model\.pt: .*cannot be loaded safely") as e:
            load(bad)
        assert "weights_only" not in str(e.value)
    (tmp_path / "absent").mkdir()
    with pytest.raises(BadInputError, match="no such checkpoint file"):
        load_fitted_threshold(tmp_path / "absent" / "model.pt")
    torch.save(torch.zeros(2), tmp_path / "bare.pt")
    with pytest.raises(BadInputError, match="no 'threshold' entry .*a Tensor, not a dict"):
        load_volume_threshold(tmp_path / "bare.pt")


# --- volume thresholds ------------------------------------------------------------------------------------------------


def _outputs(n_volumes: int, slices: int = 10, anomalous_volume: bool = True, seed: int = 0) -> list[dict]:
    """Per-sample outputs of a validation run: normal volumes (all slices label 0) and one volume with a lesion."""
    rng = np.random.default_rng(seed)
    out = [
        {"score": float(rng.normal(1.0, 0.1)), "label": 0, "volume_id": f"normal{v}"}
        for v in range(n_volumes)
        for _ in range(slices)
    ]
    if anomalous_volume:  # its lesion-free slices are label 0 but the volume is not normal
        out += [{"score": 1.0, "label": 0, "volume_id": "tumour"} for _ in range(slices // 2)]
        out += [{"score": 3.0, "label": 1, "volume_id": "tumour"} for _ in range(slices // 2)]
    return out


def test_volume_threshold_fitted_on_normal_volumes_when_there_are_enough():
    from monai_anomaly.scoring.aggregation import aggregate_scores

    fitter = ThresholdFitter("mean_std", k=2.0, aggregation="topk", aggregation_kwargs={"k": 0.2}, min_volumes=5)
    outs = _outputs(6)
    fitter.update(outs)
    fitter.fit()
    vols = [
        aggregate_scores([o["score"] for o in outs if o["volume_id"] == f"normal{v}"], "topk", k=0.2) for v in range(6)
    ]
    assert fitter.volume_threshold == pytest.approx(np.mean(vols) + 2.0 * np.std(vols))
    assert (
        "6 normal val volumes" in fitter.volume_rule
    )  # the tumour volume's lesion-free slices are not a normal volume
    state = fitter.state_dict()
    again = ThresholdFitter()
    again.load_state_dict(state)
    assert again.volume_threshold == pytest.approx(fitter.volume_threshold) and again.volume_rule == fitter.volume_rule
    # the normal validation scores AUCp at test time compares an unlabelled set with survive the checkpoint
    normals = again.validation_normals()
    assert normals["volume"] == pytest.approx(vols)
    assert sorted(normals["slice"]) == pytest.approx(sorted(o["score"] for o in outs if o["label"] == 0))
    legacy = {k: v for k, v in state.items() if k != "normal_volume_scores"}  # a model saved before they were kept
    old = ThresholdFitter()
    old.load_state_dict(legacy)
    assert old.validation_normals()["volume"] == []


def test_few_normal_volumes_simulate_the_volume_score_of_normals(tmp_path):
    """With fewer than min_volumes normal validation volumes, the volume threshold is fitted on pseudo-volumes drawn
    from the normal validation slices: fresh normal scans stay under it, scans whose top slices stand out exceed it
    (the slice threshold applied to a top-k mean, the earlier rule, flags about four times as many normal scans)."""
    from monai_anomaly.scoring.aggregation import aggregate_scores

    rng = np.random.default_rng(1)
    n = 40
    outs = [{"score": float(s), "label": 0, "volume_id": f"v{v}"} for v in range(2) for s in rng.normal(0.2, 0.05, n)]
    fitter = ThresholdFitter("mean_std", k=3.0, aggregation="topk", aggregation_kwargs={"k": 0.05}, min_volumes=5)
    fitter.update(outs)
    fitter.fit()
    assert fitter.volume_rule.startswith("simulated") and f"of {n} slices" in fitter.volume_rule
    again = ThresholdFitter("mean_std", k=3.0, aggregation="topk", aggregation_kwargs={"k": 0.05}, min_volumes=5)
    again.update(outs)
    again.fit()
    assert again.volume_threshold == fitter.volume_threshold  # seeded

    def volume_scores(shift: float, n_lesion: int) -> np.ndarray:
        scans = rng.normal(0.2, 0.05, (500, n))
        scans[:, :n_lesion] += shift
        return np.array([aggregate_scores(s, "topk", k=0.05) for s in scans])

    normal, lesion = volume_scores(0.0, 0), volume_scores(0.15, 4)  # 4 slices of 40 at +3 std
    assert np.mean(normal >= fitter.volume_threshold) < 0.05  # the std of 80 normal slices is an estimate
    assert np.mean(lesion >= fitter.volume_threshold) > 0.9
    old_rule = float(fitter.threshold.value)  # the earlier rule: the slice threshold applied to the top-k mean
    assert np.mean(normal >= old_rule) > 2 * np.mean(normal >= fitter.volume_threshold)  # it flagged 4x more normals

    frac = ThresholdFitter("mean_std", aggregation="fraction_above", fraction_volume=0.1)
    frac.update(_outputs(2))
    frac.fit()
    assert frac.volume_threshold == 0.1 and "0.1" in frac.volume_rule and frac.volume_rule.startswith("derived")
    torch.save({"threshold": fitter.state_dict()}, tmp_path / "model.pt")
    value, rule = load_volume_threshold(tmp_path / "model.pt")
    assert value == pytest.approx(fitter.volume_threshold) and rule == fitter.volume_rule
