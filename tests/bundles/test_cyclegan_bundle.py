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
    """two_domain: the mixed images (labels hidden) are the abnormal domain; the model maps them to normal."""
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
    ckpt = torch.load(out / "models" / "checkpoint_epoch=1.pt", map_location="cpu", weights_only=True)
    # both replay buffers saw images: domain A (the mixed set) is not empty
    assert ckpt["buffer_a"]["images"].shape[0] > 0 and ckpt["buffer_b"]["images"].shape[0] > 0
    assert not any("perceptual" in k for k in ckpt)  # the user's network is neither trained nor saved
    AnomalyCLI().evaluate(str(data), output_dir=str(out), bundle=BUNDLE)
    m = json.loads((out / "eval" / "metrics.json").read_text())
    assert m["slice"]["metrics"]["n_anomalous"] == 12 and m["slice"]["metrics"]["n_normal"] == 12
