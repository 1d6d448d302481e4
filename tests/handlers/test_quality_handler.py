"""Tests of monai_anomaly.handlers.quality.GenerativeQualityHandler on a tiny AnomalyEvaluator, and of
``evaluate --quality True`` through the CLI on the tiny trained autoencoder bundle."""

from __future__ import annotations

import json
import math

import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.networks.nets import resnet18

from monai_anomaly.engines.evaluator import AnomalyEvaluator
from monai_anomaly.handlers.quality import QUALITY_SECTION, GenerativeQualityHandler
from monai_anomaly.handlers.report import AnomalyReportHandler
from monai_anomaly.handlers.scores import AnomalyScoreCollector
from monai_anomaly.networks.anomaly_net import AnomalyMapNet
from monai_anomaly.networks.autoencoder import ConvAutoEncoder
from monai_anomaly.utils.errors import BadInputError

SIZE = 32
FID_SETS = ("reconstructed_normal_vs_real_normal", "translated_abnormal_vs_real_normal", "real_abnormal_vs_real_normal")


def _items(n_normal=6, n_abnormal=4) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    brain = ((xx / 0.7) ** 2 + (yy / 0.8) ** 2 <= 1).float()[None] * 0.5
    items = []
    for i in range(n_normal + n_abnormal):
        img = brain + 0.05 * torch.rand(1, SIZE, SIZE, generator=g)
        label = int(i >= n_normal)
        if label:
            img = img + 0.4 * torch.exp(-((xx - 0.1 * i + 0.5) ** 2 + yy**2) / 0.02)[None]
        items.append({"image": img.clamp(0, 1), "label": label, "volume_id": f"v{i}", "slice_index": 0})
    return items


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2), num_res_units=0).eval()


def _run(handlers, net=None, items=None):
    loader = DataLoader(Dataset(items or _items()), batch_size=3, shuffle=False, num_workers=0)
    ev = AnomalyEvaluator("cpu", loader, AnomalyMapNet(net or _net()), val_handlers=handlers)
    ev.run()
    return ev


@pytest.fixture(scope="module")
def feature_ckpt(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("features") / "resnet18.pt"
    torch.save({"model": resnet18(spatial_dims=2, n_input_channels=1, num_classes=2).state_dict()}, path)
    return path


def test_quality_with_a_feature_network_after_the_report(tmp_path, feature_ckpt):
    collector = AnomalyScoreCollector()
    quality = GenerativeQualityHandler(tmp_path, feature_network=str(feature_ckpt), intensity_range=(0, 1))
    _run([collector, AnomalyReportHandler(tmp_path, collector), quality])
    q = json.loads((tmp_path / "quality.json").read_text())
    assert q["feature_network"] == str(feature_ckpt)
    assert q["n_seen"]["normal"] == 6 and q["n_seen"]["abnormal"] == 4
    rec = q["reconstruction_normal"]
    assert rec["n"] == 6 and 0 < rec["ssim"] < 1 and rec["psnr"] > 0 and rec["data_range"] == 1.0
    assert rec["ms_ssim_scales"] == 2 and rec["ms_ssim_note"]
    for name in FID_SETS:
        assert math.isfinite(q["fid"][name]["value"]) and q["fid"][name]["value"] >= 0, name
    assert q["fid"]["reconstructed_normal_vs_real_normal"]["n_generated_normal"] == 6
    assert q["fid"]["translated_abnormal_vs_real_normal"] == {
        "n_generated_abnormal": 4,
        "n_real_normal": 6,
        "value": q["fid"]["translated_abnormal_vs_real_normal"]["value"],
    }
    assert q["fid"]["feature_dim"] == 512
    for name in ("real_normal", "generated_normal", "real_abnormal", "generated_abnormal"):
        assert 1.0 <= q["inception_score"][name]["value"] <= 2.0 + 1e-9, name
    report = (tmp_path / "anomaly_report.txt").read_text()
    assert report.startswith("Anomaly detection report")  # the report handler's text, then the section
    assert report.count(QUALITY_SECTION) == 1 and "FID" in report and "Inception Score" in report
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["quality"] == q and "quality.json" in metrics["files"]
    assert "auroc" in metrics["slice"]["metrics"]  # the report's own content is kept


def test_identity_reconstruction_without_features(tmp_path):
    quality = GenerativeQualityHandler(tmp_path, intensity_range=(0, 1))
    _run([quality], net=torch.nn.Identity())
    q = json.loads((tmp_path / "quality.json").read_text())
    assert q["feature_network"] == "none: FID/IS skipped"
    assert "skipped" in q["fid"] and "skipped" in q["inception_score"]
    rec = q["reconstruction_normal"]
    assert rec["ssim"] == pytest.approx(1.0, abs=1e-5) and rec["psnr"] is None  # inf is written as null
    assert quality.result["reconstruction_normal"]["psnr"] == math.inf
    text = (tmp_path / "anomaly_report.txt").read_text()  # created: no report handler ran
    assert text.startswith(QUALITY_SECTION) and "inf" in text and "FID: skipped" in text
    assert not (tmp_path / "metrics.json").exists()
    quality.write()  # writing again replaces the section
    assert (tmp_path / "anomaly_report.txt").read_text().count(QUALITY_SECTION) == 1


def test_identical_translation_has_zero_fid_and_small_sets_give_reasons(tmp_path):
    torch.manual_seed(1)
    net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=2)
    quality = GenerativeQualityHandler(tmp_path, feature_network=net, max_samples=5)
    _run([quality], net=torch.nn.Identity(), items=_items(n_normal=7, n_abnormal=1))
    r = quality.result
    assert r["feature_network"] == "given module: ResNet"
    assert r["reconstruction_normal"]["n"] == 5  # capped at max_samples
    assert r["reconstruction_normal"]["data_range_source"].startswith("observed")
    assert r["fid"]["reconstructed_normal_vs_real_normal"]["value"] == pytest.approx(0.0, abs=1e-3)
    for name in ("translated_abnormal_vs_real_normal", "real_abnormal_vs_real_normal"):
        assert "fewer than 2" in r["fid"][name]["skipped"] and "value" not in r["fid"][name]
    assert "fewer than 2" in r["inception_score"]["real_abnormal"]["skipped"]
    assert r["inception_score"]["real_normal"]["n"] == 5


def test_fid_in_both_directions_with_a_normal_to_abnormal_generator_and_is_over_splits(tmp_path):
    """With a two-domain model's to_abnormal generator, the normals are translated the other way too and compared
    with the real abnormals (FID per domain, both directions); every Inception Score is a mean +- std over splits."""
    torch.manual_seed(1)
    net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=2)
    quality = GenerativeQualityHandler(tmp_path, feature_network=net, to_abnormal=torch.nn.Identity(), is_splits=3)
    _run([quality], items=_items(n_normal=8, n_abnormal=6))
    fid = quality.result["fid"]
    both = fid["translated_normal_vs_real_abnormal"]
    # an identity "translation" of the normals is the real normals: the same distance as real abnormal vs normal
    assert both["n_to_abnormal_normal"] == 8 and both["n_real_abnormal"] == 6
    assert both["value"] == pytest.approx(fid["real_abnormal_vs_real_normal"]["value"], rel=1e-4)
    inc = quality.result["inception_score"]
    assert inc["real_normal"]["splits"] == 3 and inc["real_abnormal"]["splits"] == 3
    assert inc["translated_normal_to_abnormal"]["n"] == 8 and inc["real_normal"]["std"] > 0
    assert inc["translated_normal_to_abnormal"]["value"] == pytest.approx(inc["real_normal"]["value"])
    text = "\n".join(quality.report_lines())
    assert "translated normal vs real abnormal" in text and "over 3 split(s)" in text
    # without the generator the other direction is skipped with its reason
    plain = GenerativeQualityHandler(tmp_path / "plain", feature_network=net)
    _run([plain], items=_items(n_normal=8, n_abnormal=6))
    assert "no normal -> abnormal generator" in plain.result["fid"]["translated_normal_vs_real_abnormal"]["skipped"]
    assert "translated_normal_to_abnormal" not in plain.result["inception_score"]


def test_foreign_feature_checkpoint_is_refused(tmp_path):
    torch.save({"model": _net().state_dict()}, tmp_path / "ae.pt")
    with pytest.raises(BadInputError, match="resnet18"):
        GenerativeQualityHandler(tmp_path, feature_network=str(tmp_path / "ae.pt"))


@pytest.mark.bundle
@pytest.mark.slow
def test_cli_evaluate_with_quality(tiny_trained_bundle, tmp_path, feature_ckpt):
    from monai_anomaly.cli import main

    bundle = tiny_trained_bundle
    eval_dir = tmp_path / "eval"
    argv = ["evaluate", str(bundle.parent / "data"), "--output_dir", str(bundle), "--bundle", str(bundle)]
    main([*argv, "--eval_dir", str(eval_dir), "--quality", "True", "--debug"])
    q = json.loads((eval_dir / "quality.json").read_text())
    rec = q["reconstruction_normal"]
    assert rec["n"] > 0 and 0 < rec["ssim"] <= 1 and rec["psnr"] > 0
    assert q["feature_network"] == "none: FID/IS skipped" and "skipped" in q["fid"]
    assert QUALITY_SECTION in (eval_dir / "anomaly_report.txt").read_text()
    assert json.loads((eval_dir / "metrics.json").read_text())["quality"] == q
    # with a feature checkpoint: FID of the translations
    argv += ["--eval_dir", str(tmp_path / "eval_fid"), "--quality", "True", "--quality_features", str(feature_ckpt)]
    main([*argv, "--debug"])
    q = json.loads((tmp_path / "eval_fid" / "quality.json").read_text())
    assert q["feature_network"] == str(feature_ckpt)
    assert math.isfinite(q["fid"]["reconstructed_normal_vs_real_normal"]["value"])
    assert math.isfinite(q["fid"]["translated_abnormal_vs_real_normal"]["value"])


def test_an_inception_weight_file_gives_fid_on_its_2048_features_and_says_so(tmp_path):
    from monai_anomaly.metrics.inception import InceptionV3FID

    torch.manual_seed(2)  # random weights in torch-fidelity's layout: the real file is the user's, never downloaded
    path = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save({k: v for k, v in InceptionV3FID().state_dict().items() if "num_batches" not in k}, path)
    collector = AnomalyScoreCollector()
    quality = GenerativeQualityHandler(tmp_path, feature_network=str(path), intensity_range=(0, 1), is_splits=2)
    _run([collector, AnomalyReportHandler(tmp_path, collector), quality], items=_items(4, 2))
    q = json.loads((tmp_path / "quality.json").read_text())
    assert q["feature_network"].startswith("Inception-v3 (2015-12-05") and str(path) in q["feature_network"]
    assert "comparable with the FID / IS of papers" in q["feature_note"] and "299 x 299" in q["feature_input"]
    assert q["fid"]["feature_dim"] == 2048
    assert math.isfinite(q["fid"]["reconstructed_normal_vs_real_normal"]["value"])
    assert 1.0 <= q["inception_score"]["real_normal"]["value"] <= 1008
