"""The CycleGAN through the bundle and the CLI: identity mode on normals, served by inference, resumed with its
discriminators and replay buffers."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from monai_anomaly.cli import AnomalyCLI, sample_data_dir
from monai_anomaly.utils.cli_errors import root_cause
from monai_anomaly.utils.errors import BadInputError

BUNDLE = "cyclegan_anomaly"
TINY = {
    "image_size": 32,
    "channels": [8, 16],
    "res_blocks": 1,
    "disc_channels": 8,
    "disc_layers": 2,
    "batch_size": 8,
    "val_interval": 1,
}


def _sample(dst):
    src = sample_data_dir()
    for sub, files in (("normal", sorted((src / "normal").glob("*.png"))[:30]),
                       ("abnormal/glioma", sorted((src / "abnormal" / "glioma").glob("*.png"))[:10])):  # fmt: skip
        (dst / sub).mkdir(parents=True)
        for f in files:
            shutil.copy(f, dst / sub / f.name)
    return dst


def test_cyclegan_trains_evaluates_infers_and_resumes(tmp_path):
    data = _sample(tmp_path / "data")
    out = tmp_path / "run"
    AnomalyCLI().train(str(data), output_dir=str(out), bundle=BUNDLE, max_epochs=2, **TINY)
    ckpt = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["settings"]["model_type"] == "cyclegan" and ckpt["settings"]["res_blocks"] == 1
    last = torch.load(out / "models" / "checkpoint_epoch=2.pt", map_location="cpu", weights_only=True)
    assert {"model", "to_a", "disc_a", "disc_b", "disc_a_optimizer", "disc_b_optimizer", "buffer_a", "buffer_b"} <= set(
        last
    )
    assert last["buffer_a"]["images"].shape[0] > 0  # the replay history is saved
    AnomalyCLI().evaluate(str(data), output_dir=str(out), bundle=BUNDLE)
    m = json.loads((out / "eval" / "metrics.json").read_text())
    assert m["run_info"]["model_type"] == "cyclegan" and m["slice"]["metrics"]["n_anomalous"] > 0
    inf = AnomalyCLI().infer(
        str(data / "abnormal" / "glioma"),
        output_dir=str(tmp_path / "inf"),
        ckpt=str(out / "models" / "model.pt"),
        bundle=BUNDLE,
    )
    assert len(json.loads((tmp_path / "inf" / "scores.json").read_text())["scans"]) == 10 and inf
    AnomalyCLI().train(str(data), output_dir=str(out), bundle=BUNDLE, resume=True, max_epochs=3, **TINY)
    after = torch.load(out / "models" / "checkpoint_epoch=3.pt", map_location="cpu", weights_only=True)
    assert after["trainer"]["iteration"] == 3 * (last["trainer"]["iteration"] // 2)
    assert any(not torch.equal(after["disc_b"][k], last["disc_b"][k]) for k in last["disc_b"])


def test_two_domain_cyclegan_trains_on_the_unannotated_mixed_set(tmp_path):
    """two_domain: the mixed images (labels hidden) are the abnormal domain; the model maps them to normal, and the
    checkpoint is chosen by AUCp (per subject), as Brainomaly does, since a mixed set exists."""
    src = sample_data_dir()
    data = tmp_path / "data"
    normals = sorted((src / "normal").glob("*.png"))
    tumours = sorted((src / "abnormal").glob("*/*.png"))
    for sub, files in (("train/neg", normals[:24]), ("train/neg_mixed", normals[24:32] + tumours[:16]),
                       ("test/neg", normals[32:44]), ("test/pos", tumours[16:28])):  # fmt: skip
        (data / sub).mkdir(parents=True)
        for i, f in enumerate(files):
            shutil.copy(f, data / sub / f"{sub.replace('/', '_')}{i // 4:03d}__{i % 4:03d}.png")
    out = tmp_path / "run"
    # the optional perceptual loss, from a weight file given here (a 1-channel MONAI resnet18, as the supervised
    # bundle writes): a missing file stops training with its name, a real one trains
    from monai.networks.nets import resnet18

    weights = tmp_path / "classifier.pt"
    torch.save({"model": resnet18(spatial_dims=2, n_input_channels=1, num_classes=2).state_dict()}, weights)
    with pytest.raises(Exception) as err:
        AnomalyCLI().train(str(data), output_dir=str(tmp_path / "bad"), bundle=BUNDLE, cyclegan_mode="two_domain",
                           max_epochs=1, perceptual_weights=str(tmp_path / "absent.pt"), **TINY)  # fmt: skip
    cause = root_cause(err.value)  # what the command line prints, without a traceback
    assert isinstance(cause, BadInputError) and "absent.pt: no such checkpoint file" in str(cause)
    AnomalyCLI().train(str(data), output_dir=str(out), bundle=BUNDLE, cyclegan_mode="two_domain", max_epochs=1,
                       perceptual_weights=str(weights), **TINY)  # fmt: skip
    from monai_anomaly.reports.training_logs import read_training_scalars

    logged = read_training_scalars(out / "logs")
    assert {"val_aucp", "val_aucp_slice"} <= set(logged)  # the checkpoint metric: AUCp per subject
    ckpt = torch.load(out / "models" / "checkpoint_epoch=1.pt", map_location="cpu", weights_only=True)
    # both replay buffers saw images: domain A (the mixed set) is not empty
    assert ckpt["buffer_a"]["images"].shape[0] > 0 and ckpt["buffer_b"]["images"].shape[0] > 0
    assert not any("perceptual" in k for k in ckpt)  # the user's network is neither trained nor saved
    AnomalyCLI().evaluate(str(data), output_dir=str(out), bundle=BUNDLE)
    m = json.loads((out / "eval" / "metrics.json").read_text())
    assert m["slice"]["metrics"]["n_anomalous"] == 12 and m["slice"]["metrics"]["n_normal"] == 12


def test_two_domain_cyclegan_takes_the_abnormal_domain_from_labels_and_translates_both_ways(tmp_path, capfd):
    """On a labelled normal/ + abnormal/ folder (no mixed set), two_domain takes domain A from the labels: half the
    validation split's abnormal images move to training (the test split is untouched); the run learns (non-empty
    replay buffers), keeps the to_abnormal generator in model.pt, and `infer --translate` writes both directions."""
    data = _sample(tmp_path / "data")
    out = tmp_path / "run"
    AnomalyCLI().train(str(data), output_dir=str(out), bundle=BUNDLE, cyclegan_mode="two_domain", max_epochs=1, **TINY)
    assert "moved to training by their labels" in capfd.readouterr().out  # the training log says labels were used
    last = torch.load(out / "models" / "checkpoint_epoch=1.pt", map_location="cpu", weights_only=True)
    assert last["buffer_a"]["images"].shape[0] > 0 and last["buffer_b"]["images"].shape[0] > 0
    model = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert model["to_abnormal"] and all(torch.equal(model["to_abnormal"][k], last["to_a"][k]) for k in last["to_a"])
    # the test split is the unsupervised one: every abnormal test image of the identity-mode split is still tested;
    # with a feature network, FID in both directions (the to_abnormal generator translates the test normals)
    from monai.networks.nets import resnet18

    weights = tmp_path / "classifier.pt"
    torch.save({"model": resnet18(spatial_dims=2, n_input_channels=1, num_classes=2).state_dict()}, weights)
    AnomalyCLI().evaluate(str(data), output_dir=str(out), bundle=BUNDLE, quality=True, quality_features=str(weights))
    q = json.loads((out / "eval" / "quality.json").read_text())
    assert q["fid"]["translated_normal_vs_real_abnormal"]["value"] >= 0
    assert q["fid"]["translated_abnormal_vs_real_normal"]["value"] >= 0
    assert q["inception_score"]["translated_normal_to_abnormal"]["splits"] >= 1
    ident = tmp_path / "ident"
    AnomalyCLI().train(str(data), output_dir=str(ident), bundle=BUNDLE, max_epochs=1, **TINY)
    AnomalyCLI().evaluate(str(data), output_dir=str(ident), bundle=BUNDLE)
    tested = [json.loads((d / "eval" / "metrics.json").read_text())["slice"]["metrics"] for d in (out, ident)]
    assert tested[0]["n_anomalous"] == tested[1]["n_anomalous"] > 0 and tested[0]["n_normal"] == tested[1]["n_normal"]
    glioma = sorted((data / "abnormal" / "glioma").glob("*.png"))[:3]
    scans = tmp_path / "scans"
    scans.mkdir()
    for f in glioma:
        shutil.copy(f, scans / f.name)
    inf = tmp_path / "inf"
    AnomalyCLI().infer(str(scans), output_dir=str(inf), ckpt=str(out / "models" / "model.pt"), bundle=BUNDLE,
                       translate=True)  # fmt: skip
    rows = (inf / "translations" / "translations.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(glioma)
    from PIL import Image

    for f in glioma:
        src = Image.open(f)
        a = Image.open(inf / "translations" / f"{f.stem}_to_normal.png")
        b = Image.open(inf / "translations" / f"{f.stem}_to_abnormal.png")
        assert a.size == b.size == src.size  # on the input's grid
        assert list(a.getdata()) != list(b.getdata())  # two different generators
    # an identity-mode model has no abnormal domain: to_normal only
    inf2 = tmp_path / "inf2"
    AnomalyCLI().infer(str(scans), output_dir=str(inf2), ckpt=str(ident / "models" / "model.pt"), bundle=BUNDLE,
                       translate=True)  # fmt: skip
    assert sorted(p.name for p in (inf2 / "translations").glob("*.png")) == sorted(
        f"{f.stem}_to_normal.png" for f in glioma
    )


def test_two_domain_without_abnormal_images_is_refused(tmp_path):
    data = tmp_path / "data"
    (data / "normal").mkdir(parents=True)
    for f in sorted((sample_data_dir() / "normal").glob("*.png"))[:20]:
        shutil.copy(f, data / "normal" / f.name)
    with pytest.raises(Exception) as err:
        AnomalyCLI().train(str(data), output_dir=str(tmp_path / "run"), bundle=BUNDLE, cyclegan_mode="two_domain",
                           max_epochs=1, **TINY)  # fmt: skip
    cause = root_cause(err.value)
    assert isinstance(cause, BadInputError) and "needs images of the abnormal domain" in str(cause)
    assert not (tmp_path / "run" / "models" / "model.pt").exists()


def test_translate_needs_a_cyclegan_model(tmp_path):
    from monai_anomaly.utils.cli_errors import UsageError

    ckpt = tmp_path / "model.pt"
    torch.save({"settings": {"model_type": "dense", "image_size": 32}, "model": {}}, ckpt)
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(sorted((sample_data_dir() / "normal").glob("*.png"))[0], scans / "a.png")
    with pytest.raises(UsageError, match="needs a CycleGAN model"):
        AnomalyCLI().infer(str(scans), output_dir=str(tmp_path / "inf"), ckpt=str(ckpt), bundle=BUNDLE, translate=True)
    assert not (tmp_path / "inf").exists()
