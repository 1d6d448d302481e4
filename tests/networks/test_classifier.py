"""The supervised reference classifier: training, its map, and how the shared evaluator scores it."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score

from monai_anomaly.engines.evaluator import AnomalyEvaluator
from monai_anomaly.handlers.aucp import LabelledAUROC
from monai_anomaly.losses.classification import SliceCrossEntropy
from monai_anomaly.networks.anomaly_net import AnomalyMapNet
from monai_anomaly.networks.classifier import SliceClassifier
from monai_anomaly.networks.factory import reconstruction_network


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey discs ("brains"); half carry a bright square ("lesion") at a random place."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disc = (((yy - 16) ** 2 + (xx - 16) ** 2) < 13**2).float() * 0.4
    x = disc.expand(n, 1, 32, 32).clone() + 0.02 * torch.randn(n, 1, 32, 32, generator=g)
    y = torch.arange(n) % 2
    for i in torch.nonzero(y).flatten().tolist():
        r, c = torch.randint(8, 20, (2,), generator=g).tolist()
        x[i, 0, r : r + 5, c : c + 5] = 1.0
    return x, y


def test_it_learns_labelled_lesions_and_its_score_is_the_probability():
    torch.manual_seed(0)
    net = SliceClassifier()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = SliceCrossEntropy()
    x, y = _blobs(64, 0)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(net(x), y.float())  # the slice datasets may collate float labels
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < 0.5 * first
    net.eval()
    xt, yt = _blobs(32, 1)
    with torch.no_grad():
        p = net.probability(xt)
        amap = net.anomaly_map(xt)
    assert roc_auc_score(yt.numpy(), p.numpy()) > 0.9  # held-out images separate
    # the map peaks at p(abnormal): the "max" slice score is the classifier's probability
    torch.testing.assert_close(amap.flatten(1).amax(1), p)
    assert amap.min() >= 0
    assert all(prm.grad is None for prm in net.parameters())  # Grad-CAM leaves no gradients behind
    assert not net.training


def test_map_keeps_training_mode_and_one_set_of_hooks():
    net = SliceClassifier().train()
    x = torch.rand(2, 1, 32, 32)
    net.anomaly_map(x)
    net.anomaly_map(x)
    assert net.training
    assert len(net.net.layer4._forward_hooks) == 1


def test_the_inference_wrapper_and_the_factory_give_the_classifier_map():
    net = reconstruction_network("resnet18", 32)
    assert isinstance(net, SliceClassifier)
    wrapped = AnomalyMapNet(net).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), net.anomaly_map(x))


def test_shared_evaluator_scores_the_classifier_by_probability_and_cross_entropy():
    torch.manual_seed(0)
    net = SliceClassifier().eval()
    x, y = _blobs(6, 2)
    fg = (x > 0.2).float()
    data = [{"image": x, "label": y, "foreground": fg, "volume_id": [str(i) for i in range(6)]}]
    ev = AnomalyEvaluator(
        "cpu", data, AnomalyMapNet(net).eval(), score_method="max", score_region="image", foreground_key="foreground",
        key_val_metric={"val_auroc": LabelledAUROC()}, decollate=True,
    )  # fmt: skip
    ev.run()
    out = {k: [o[k] for o in ev.state.output] for k in ("score", "anomaly_map", "val_loss")}
    out = {k: torch.stack([torch.as_tensor(v) for v in vals]) for k, vals in out.items()}
    with torch.no_grad():
        p = net.probability(x)
        ce = torch.nn.functional.cross_entropy(net(x), y, reduction="none")
    assert torch.all(out["score"] <= p + 1e-6)  # the map is 0 outside the body
    torch.testing.assert_close(out["anomaly_map"], net.anomaly_map(x) * fg)
    torch.testing.assert_close(out["val_loss"], ce)
    assert 0.0 <= ev.state.metrics["val_auroc"] <= 1.0


def test_cross_entropy_refuses_unlabelled_slices():
    with pytest.raises(ValueError, match="labels must be in"):
        SliceCrossEntropy()(torch.zeros(2, 2), torch.tensor([0, -1]))
