"""Tests of monai_anomaly.engines.evaluator: the output contract, scores, val_normal_loss and key-metric saving."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.handlers import CheckpointSaver

from monai_anomaly.engines.evaluator import AnomalyEvaluator, NormalValidationLoss
from monai_anomaly.engines.utils import lower_is_better
from monai_anomaly.networks.anomaly_net import AnomalyMapNet
from monai_anomaly.networks.autoencoder import ConvAutoEncoder, ConvVAE
from monai_anomaly.scoring.maps import compute_anomaly_map
from monai_anomaly.scoring.slice_scores import slice_scores

CONTRACT = {"image", "reconstruction", "anomaly_map", "score", "label", "volume_id", "slice_index"}
SIZE = 32


def _yx():
    return torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")


def _template() -> torch.Tensor:
    yy, xx = _yx()
    return (((xx / 0.7) ** 2 + (yy / 0.8) ** 2 <= 1).float() * 0.5)[None]


class TemplateNet(torch.nn.Module):
    """Reconstructs every input as the normal template: a perfect model of normal anatomy."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("template", _template())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.template.expand_as(x)


def _items() -> list[dict]:
    g = torch.Generator().manual_seed(0)
    yy, xx = _yx()
    items = []
    for i in range(8):
        anomalous = i >= 5
        img = _template() + 0.01 * torch.randn(1, SIZE, SIZE, generator=g)
        if anomalous:
            img = img + 0.5 * torch.exp(-((xx - 0.1 * i + 0.6) ** 2 + yy**2) / 0.02)[None]
        items.append({"image": img, "label": int(anomalous), "volume_id": f"v{i // 3}", "slice_index": i % 3})
    return items


def _loader(items, bs=3):
    return DataLoader(Dataset(items), batch_size=bs, shuffle=False, num_workers=0)


def test_outputs_follow_the_contract_and_scores_separate():
    items = _items()
    ev = AnomalyEvaluator("cpu", _loader(items), AnomalyMapNet(TemplateNet(), "abs"), score_method="max")
    outputs: list = []
    ev.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.extend(e.state.output))
    ev.run()
    assert len(outputs) == len(items)
    for item, out in zip(items, outputs):
        assert CONTRACT <= set(map(str, out))
        assert out["anomaly_map"].shape == (1, SIZE, SIZE)
        assert out["reconstruction"].shape == (1, SIZE, SIZE)
        assert out["volume_id"] == item["volume_id"] and int(out["slice_index"]) == item["slice_index"]
        assert int(out["label"]) == item["label"]
        expected_map = (item["image"] - _template()).abs()
        assert torch.allclose(out["anomaly_map"], expected_map, atol=1e-6)
        assert float(out["score"]) == pytest.approx(float(expected_map.max()), rel=1e-5)
    normal = [float(o["score"]) for o in outputs if int(o["label"]) == 0]
    anomalous = [float(o["score"]) for o in outputs if int(o["label"]) == 1]
    assert min(anomalous) > max(normal)


def test_val_normal_loss_is_mean_l1_over_normal_slices_and_lower_is_better():
    items = _items()
    ev = AnomalyEvaluator("cpu", _loader(items), AnomalyMapNet(TemplateNet()))
    ev.run()
    l1 = [float((i["image"] - _template()).abs().mean()) for i in items if i["label"] == 0]
    assert ev.state.metrics["val_normal_loss"] == pytest.approx(sum(l1) / len(l1), rel=1e-5)
    assert ev.state.key_metric_name == "val_normal_loss" and ev.metric_cmp_fn is lower_is_better
    assert ev.state.best_metric == pytest.approx(ev.state.metrics["val_normal_loss"])


def test_key_metric_checkpoint_keeps_the_lowest_loss(tmp_path):
    torch.manual_seed(0)
    net = ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2), num_res_units=0)
    ev = AnomalyEvaluator("cpu", _loader(_items()), AnomalyMapNet(net))
    CheckpointSaver(str(tmp_path), {"network": net}, save_key_metric=True, key_metric_negative_sign=True).attach(ev)
    ev.run()
    first = ev.state.metrics["val_normal_loss"]
    with torch.no_grad():  # a worse model: the best checkpoint must stay the first one
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    ev.run()
    assert ev.state.metrics["val_normal_loss"] > first
    assert ev.state.best_metric == pytest.approx(first)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and f"{-first:.4f}" in files[0]


def test_vae_ssim_map_percentile_score_and_batched_output():
    torch.manual_seed(0)
    vae = ConvVAE(2, 1, 1, in_shape=(SIZE, SIZE), channels=(4, 8), strides=(2, 2), latent_size=8)
    ev = AnomalyEvaluator(
        "cpu",
        _loader(_items(), bs=4),
        AnomalyMapNet(vae, "ssim"),
        score_method="percentile",
        score_kwargs={"q": 90.0},
        decollate=False,
    )
    ev.run()
    out = ev.state.output  # the last batch, not decollated
    assert out["anomaly_map"].shape == (4, 1, SIZE, SIZE) and out["score"].shape == (4,)
    assert torch.allclose(out["score"], slice_scores(out["anomaly_map"], "percentile", q=90.0))
    with torch.no_grad():
        recon = vae.eval()(out["image"])[0]  # deterministic in eval mode
    assert torch.allclose(out["reconstruction"], recon, atol=1e-6)
    assert torch.allclose(out["anomaly_map"], compute_anomaly_map(out["image"], recon, "ssim"), atol=1e-5)


def test_foreground_masks_map_and_score():
    items = _items()
    for it in items:
        it["foreground"] = (_template() > 0).float()
        it["image"] = it["image"] + 0.3 * (_template() == 0).float()  # a bright artefact outside the brain
    ev = AnomalyEvaluator(
        "cpu",
        _loader(items),
        AnomalyMapNet(TemplateNet()),
        score_method="mean",
        foreground_key="foreground",
        decollate=False,
    )
    ev.run()
    out = ev.state.output
    outside = (_template() == 0).expand_as(out["anomaly_map"])
    assert float(out["anomaly_map"][outside].abs().max()) == 0.0
    assert torch.allclose(out["score"], slice_scores(out["anomaly_map"], "mean", mask=out["foreground"]))


def test_batches_without_metadata_get_defaults():
    data = [{"image": torch.rand(2, 1, SIZE, SIZE)}]
    ev = AnomalyEvaluator("cpu", data, AnomalyMapNet(TemplateNet()), decollate=False)
    ev.run()
    out = ev.state.output
    assert out["label"].tolist() == [-1, -1] and out["volume_id"] == ["", ""] and out["slice_index"].tolist() == [0, 0]
    assert math.isnan(ev.state.metrics["val_normal_loss"])  # no labelled normals


def test_bad_arguments():
    with pytest.raises(TypeError, match="predict"):
        AnomalyEvaluator("cpu", [], TemplateNet())  # a bare network: wrap it in AnomalyMapNet
    with pytest.raises(ValueError, match="score_method"):
        AnomalyEvaluator("cpu", [], AnomalyMapNet(TemplateNet()), score_method="median")
    with pytest.raises(ValueError, match="score_region"):
        AnomalyEvaluator("cpu", [], AnomalyMapNet(TemplateNet()), score_region="brain")


def test_normal_reconstruction_loss_metric():
    m = NormalValidationLoss()
    m.reset()
    m.update(
        m._output_transform([{"val_loss": torch.tensor(0.2), "label": torch.tensor(0)}, {"val_loss": 5.0, "label": 1}])
    )
    m.update(m._output_transform({"val_loss": torch.tensor([0.4, 9.0]), "label": torch.tensor([0, -1])}))
    assert m.compute() == pytest.approx(0.3)


def test_collector_from_handlers_reads_the_evaluator_output():
    import monai_anomaly.handlers.scores as scores_mod  # the project's own module: a broken import must fail

    collector = scores_mod.AnomalyScoreCollector()
    ev = AnomalyEvaluator(
        "cpu", _loader(_items()), AnomalyMapNet(TemplateNet()), score_method="max", val_handlers=[collector]
    )
    ev.run()
    assert ev.state.metrics["slice_auroc"] == pytest.approx(1.0)


def test_scores_do_not_depend_on_where_the_batches_break():
    """A sample scored in a short last batch gets the same score, to the bit, as in a full one (what makes evaluate
    over several processes, whose batches break elsewhere, equal to one process); the filled-up batch's extra samples
    never reach the output."""
    from monai_anomaly.networks.anomaly_net import AnomalyMapNet
    from monai_anomaly.networks.autoencoder import ConvAutoEncoder

    torch.manual_seed(0)
    net = AnomalyMapNet(ConvAutoEncoder(2, 1, 1, channels=(16, 32, 64), strides=(2, 2, 2), num_res_units=1).eval())
    g = torch.Generator().manual_seed(1)
    items = [{"image": torch.rand(1, 64, 64, generator=g), "label": i % 2, "volume_id": f"v{i}"} for i in range(11)]

    def scores(subset):
        ev = AnomalyEvaluator("cpu", DataLoader(subset, batch_size=4, shuffle=False), net, fixed_batch=True)
        out = []
        collect = lambda e: out.extend(float(o["score"]) for o in e.state.output)  # noqa: E731
        ev.add_event_handler(Events.ITERATION_COMPLETED, collect)
        ev.run()
        return out

    whole = scores(items)  # batches 0-3, 4-7, 8-10 (3, filled to 4)
    assert scores(items[5:]) == whole[5:]  # batches 5-8, 9-10: other boundaries, other short batch
    assert scores(items[:1]) == whole[:1]  # a batch of one sample
    assert len(whole) == 11
