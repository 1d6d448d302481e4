"""--keep_every N keeps every N-th epoch's checkpoint (as the OCT CycleGAN's --model_epoch needs), beside the last two
that --resume uses; evaluate can score any kept epoch with --eval_checkpoint."""

from __future__ import annotations

import json
import shutil

import torch

from monai_anomaly.cli import AnomalyCLI, sample_data_dir

TINY = {"image_size": 32, "channels": [8, 16], "strides": [2, 2], "latent_size": 8, "hidden_size": 32}


def _data(dst):
    src = sample_data_dir()
    for sub, files in (("normal", sorted((src / "normal").glob("*.png"))[:24]),
                       ("abnormal/glioma", sorted((src / "abnormal" / "glioma").glob("*.png"))[:8])):  # fmt: skip
        (dst / sub).mkdir(parents=True)
        for f in files:
            shutil.copy(f, dst / sub / f.name)
    return dst


def test_keep_every_keeps_every_nth_epoch_and_evaluate_scores_one(tmp_path):
    data, run = _data(tmp_path / "data"), tmp_path / "run"
    AnomalyCLI().train(str(data), output_dir=str(run), max_epochs=5, keep_every=2, batch_size=8, val_interval=1,
                       num_workers=0, **TINY)  # fmt: skip
    models = sorted(p.name for p in (run / "models").glob("*.pt"))
    assert models == [
        "checkpoint_epoch=4.pt", "checkpoint_epoch=5.pt", "kept_checkpoint_epoch=2.pt", "kept_checkpoint_epoch=4.pt",
        "model.pt",
    ]  # fmt: skip
    kept = torch.load(run / "models" / "kept_checkpoint_epoch=2.pt", map_location="cpu", weights_only=True)
    last = torch.load(run / "models" / "checkpoint_epoch=5.pt", map_location="cpu", weights_only=True)
    per_epoch = last["trainer"]["epoch_length"]
    assert kept["trainer"]["iteration"] == 2 * per_epoch and last["trainer"]["iteration"] == 5 * per_epoch
    assert any(not torch.equal(kept["model"][k], last["model"][k]) for k in last["model"])
    AnomalyCLI().evaluate(str(data), output_dir=str(run), eval_checkpoint="kept_checkpoint_epoch=2.pt",
                          eval_dir=str(tmp_path / "eval2"))  # fmt: skip
    m = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
    assert m["run_info"]["model_epoch"] == 2
    # resuming keeps the earlier kept epochs and adds the new ones
    AnomalyCLI().train(str(data), output_dir=str(run), resume=True, max_epochs=6, keep_every=2, batch_size=8,
                       val_interval=1, num_workers=0, **TINY)  # fmt: skip
    kept_now = sorted(p.name for p in (run / "models").glob("kept_*.pt"))
    assert kept_now == ["kept_checkpoint_epoch=2.pt", "kept_checkpoint_epoch=4.pt", "kept_checkpoint_epoch=6.pt"]
