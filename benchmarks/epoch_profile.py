"""Where an epoch's time goes: fetching batches against the training step, for a bundle's own trainer.

Runs the bundle's ``train#trainer`` (its real data set, augmentation, loader and step) on ``DATASET`` for
``--epochs`` epochs without validation, and times with Ignite's events:

- data: ``GET_BATCH_STARTED`` -> ``GET_BATCH_COMPLETED`` (the loader: per-slice transforms, copies, collation);
- step: ``ITERATION_STARTED`` -> ``ITERATION_COMPLETED`` (prepare_batch, batch augmentation, forward, backward,
  optimiser step);
- the epoch: the first batch fetched to the last step done.

Then the network alone: the same step (``trainer._iteration``) on one fixed batch, repeated: images/s with no data
work at all. Prints and writes a JSON (``--out``).

    python benchmarks/epoch_profile.py ../shared/data/brain_tumor_mri_4class --epochs 3 --out /tmp/w/profile.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def profile(
    dataset: str, bundle: str = "autoencoder_anomaly", epochs: int = 3, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    from ignite.engine import Events
    from monai.bundle import ConfigParser

    root = REPO / "bundles" / bundle
    with tempfile.TemporaryDirectory(prefix="epoch_profile_") as tmp:
        parser = ConfigParser()
        parser.read_meta(str(root / "configs" / "metadata.json"))
        parser.read_config(str(root / "configs" / "train.json"))
        parser.update(
            {
                "bundle_root": str(root),
                "dataset_dir": str(dataset),
                "output_dir": tmp,
                "device": "$torch.device('cpu')",
                "max_epochs": int(epochs),
                "val_interval": 10**6,  # no validation inside the timed epochs
                **(overrides or {}),
            }
        )
        parser.get_parsed_content("initialize")
        trainer = parser.get_parsed_content("train#trainer")
        n_images = len(parser.get_parsed_content("train#dataset"))
        batch = int(parser.get_parsed_content("batch_size"))
        t: dict[str, float] = {"data": 0.0, "step": 0.0}
        marks: dict[str, float] = {}
        epochs_s: list[float] = []

        def at(name: str):
            def f(_e: Any) -> None:
                marks[name] = time.perf_counter()

            return f

        def add(start: str, key: str):
            def f(_e: Any) -> None:
                t[key] += time.perf_counter() - marks[start]

            return f

        trainer.add_event_handler(Events.EPOCH_STARTED, at("epoch"))
        trainer.add_event_handler(Events.GET_BATCH_STARTED, at("get"))
        trainer.add_event_handler(Events.GET_BATCH_COMPLETED, add("get", "data"))
        trainer.add_event_handler(Events.ITERATION_STARTED, at("step"))
        trainer.add_event_handler(Events.ITERATION_COMPLETED, add("step", "step"))
        trainer.add_event_handler(Events.ITERATION_COMPLETED, at("last"))
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs_s.append(marks["last"] - marks["epoch"]))
        # the network alone first: the trainer's own step on one fixed batch, no loader (its weights are then
        # reset, so the timed epochs start from the same model)
        state = {k: v.detach().clone() for k, v in trainer.network.state_dict().items()}
        fixed = next(iter(parser.get_parsed_content("train#dataloader")))
        trainer.state.epoch, trainer.state.iteration = 1, 0
        for _ in range(3):
            trainer._iteration(trainer, fixed)
        reps = 20
        t0 = time.perf_counter()
        for _ in range(reps):
            trainer._iteration(trainer, fixed)
        alone = reps * batch / (time.perf_counter() - t0)
        trainer.network.load_state_dict(state)
        trainer.state.epoch, trainer.state.iteration = 0, 0  # the run starts from epoch 0
        parser.get_parsed_content("run")
        iterations = int(trainer.state.iteration)
    total = sum(epochs_s)
    return {
        "bundle": bundle,
        "dataset": str(dataset),
        "overrides": overrides or {},
        "n_training_images": n_images,
        "batch_size": batch,
        "epochs": epochs,
        "iterations": iterations,
        "epoch_seconds": epochs_s,
        "data_seconds": t["data"],
        "step_seconds": t["step"],
        "data_share": t["data"] / total,
        "outside_step_share": 1.0 - t["step"] / total,
        "epoch_images_per_s": iterations * batch / total,
        "network_alone_images_per_s": alone,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--bundle", default="autoencoder_anomaly")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--set", nargs="*", default=[], help="config overrides id=json, e.g. batch_augmentation=false")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    overrides = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        overrides[k] = json.loads(v)
    res = profile(args.dataset, args.bundle, args.epochs, overrides)
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
