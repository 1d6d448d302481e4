"""Write the method bundles (GAN, diffusion, supervised reference) from the autoencoder bundle and their method
files, so they differ only where the method does.

``bundles/autoencoder_anomaly`` holds everything every method shares: data layouts, splits, preprocessing, slicing,
scoring, thresholds, reports, checkpointing, resume, multi-process training and inference. A method is a file of
overrides in ``bundles/autoencoder_anomaly/configs/variants/`` (network, losses, engine, what the checkpoint holds).
This script merges each method file on the shared configs and writes a complete, self-contained bundle
(``monai.bundle run``, ``ckpt_export``, MONAI Label read it alone):

- ``configs/train.json``: the autoencoder's train.json with the method file applied (MONAI's ``#`` paths);
- ``configs/inference.json``, ``evaluate.json``: the shared ones, with the method's network and scoring settings as
  the ``defaults`` inference falls back to when ``model.pt`` has none;
- ``configs/multi_gpu_train.json``: the shared one plus every network of the method wrapped in DDP;
- ``configs/metadata.json``: the method's name, description, references and changelog;
- ``LICENSE``, ``configs/logging.conf`` copied.

Edit the autoencoder bundle or a method file, then run ``python tools/make_method_bundles.py``;
``tests/bundles/test_bundles.py`` fails when a generated bundle is out of date. ``docs/README.md`` of each bundle is
written by hand.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "bundles" / "autoencoder_anomaly"


def _ddp(module: str) -> dict[str, Any]:
    return {
        "_target_": "torch.nn.parallel.DistributedDataParallel",
        "module": module,
        "device_ids": "$[@device] if torch.cuda.is_available() else None",
    }


_RELIABILITY_NOTE = (
    "checkpoints written to a temporary file and renamed (AtomicCheckpointSaver): a full disk or a kill during a "
    "save keeps the last complete one; an interrupted run's epoch checkpoints pruned after --resume; the evaluation "
    "report's run_info names this bundle (it said autoencoder_anomaly) and the checkpoint's epoch (model_epoch; it "
    "printed the evaluator's epoch, 1)"
)

METHODS: dict[str, dict[str, Any]] = {
    "healthy_gan_anomaly": {
        "variant": "variants/healthy_gan.json",
        "multi_gpu": {
            "train_generator": _ddp("$@network.model.generator"),
            "train_critic": _ddp("@critic"),
            "train#trainer#generator": "@train_generator",
            "train#trainer#critic": "@train_critic",
        },
        "metadata": {
            "version": "0.2.1",
            "changelog": {
                "0.2.1": _RELIABILITY_NOTE,
                "0.2.0": "train_precision ('auto': bfloat16 autocast on a CUDA device that supports it, float32 "
                "elsewhere; 'bfloat16' also on a CPU with native bfloat16)",
                "0.1.0": "first release as its own bundle (was variants/healthy_gan.json of autoencoder_anomaly "
                "0.3.0): BasicUNet generator with healthy = tanh(x + map) (optional AnomalyPro mask and focus loss), "
                "WGAN-GP critic, identity L1 on known-healthy images, AUCp checkpoint selection on an unannotated "
                "mixed set, inductive and transductive evaluation; every network wrapped in DDP in multi_gpu_train",
            },
            "name": "Healthy-translation GAN anomaly detection",
            "task": "Unsupervised anomaly detection in 2D slices of brain MRI (and slice by slice in volumes)",
            "description": "A generator adds a map to the input (healthy = tanh(x + map)) and is trained against a "
            "WGAN-GP critic on known-healthy plus unannotated mixed images, with an identity loss on the "
            "known-healthy ones (Brainomaly, MedAI AnomalyPro). The anomaly map is |x - healthy|; the checkpoint "
            "is chosen by pseudo-AUC (AUCp) without labels. Slice scores are map statistics; volume scores "
            "aggregate slice scores.",
            "image_classes": "single channel grey image or volume, intensities scaled to [-1, 1]",
            "value_range": [-1, 1],
            "channel_def": "anomaly map |x - tanh(x + map)|",
            "references": [
                "Siddiquee et al., Brainomaly: Unsupervised Neurologic Disease Detection Utilizing Unannotated "
                "T1-weighted Brain MR Images, WACV 2024",
                "Gulrajani et al., Improved Training of Wasserstein GANs, NeurIPS 2017",
            ],
        },
    },
    "cyclegan_anomaly": {
        "variant": "variants/cyclegan.json",
        "multi_gpu": {
            "train_to_normal": _ddp("$@network.model"),
            "train_to_a": _ddp("@cyclegan_to_a"),
            "train_disc_a": _ddp("@disc_a"),
            "train_disc_b": _ddp("@disc_b"),
            "train#trainer#to_normal": "@train_to_normal",
            "train#trainer#to_a": "@train_to_a",
            "train#trainer#disc_a": "@train_disc_a",
            "train#trainer#disc_b": "@train_disc_b",
        },
        "metadata": {
            "version": "0.2.1",
            "changelog": {
                "0.2.1": _RELIABILITY_NOTE,
                "0.2.0": "identity mode computes the identity term from the translations it already has (4 generator "
                "passes per iteration instead of 6, same gradients); optional perceptual loss from a weight file"
                " the user gives (perceptual_weights, lambda_perceptual; nothing is downloaded); train_precision"
                " as the other GAN bundles",
                "0.1.0": "first release as its own bundle (was variants/cyclegan.json of autoencoder_anomaly "
                "0.3.0): ResNet generators (reflection padding, 1 channel), PatchGAN discriminators, least-squares "
                "adversarial, cycle (10) and identity (5) losses, replay buffers saved in the checkpoint; "
                "cyclegan_mode identity (normal -> normal) or two_domain (abnormal <-> normal); every network "
                "wrapped in DDP in multi_gpu_train",
            },
            "name": "CycleGAN anomaly detection",
            "task": "Unsupervised anomaly detection in 2D slices of brain MRI or OCT (and slice by slice in volumes)",
            "description": "A CycleGAN whose generator to 'normal' is trained either on normal images in both "
            "domains (identity mode: it learns to reproduce healthy anatomy) or on unpaired abnormal and normal "
            "images (two_domain mode). The anomaly map is |x - G_to_normal(x)|; slice scores are map statistics "
            "and volume scores aggregate slice scores.",
            "image_classes": "single channel grey image or volume, intensities scaled to [-1, 1]",
            "value_range": [-1, 1],
            "channel_def": "anomaly map |x - G_to_normal(x)|",
            "references": [
                "Zhu et al., Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks, "
                "ICCV 2017",
                "Mao et al., Least Squares Generative Adversarial Networks, ICCV 2017",
            ],
        },
    },
    "anoddpm_anomaly": {
        "variant": "variants/anoddpm.json",
        "multi_gpu": {
            "train_objective": _ddp("@diffusion_objective"),
            "train#trainer#objective": "@train_objective",
        },
        "metadata": {
            "version": "0.2.1",
            "changelog": {
                "0.2.1": _RELIABILITY_NOTE,
                "0.2.0": "diffusion#noise: 'simplex' (AnoDDPM's multi-octave simplex noise, in training and at "
                "inference) beside the default 'gaussian'; train_precision replaces the fixed bf16-on-CUDA rule",
                "0.1.0": "first release: AnoDDPM-style partial diffusion of the input (Gaussian noise to t0, "
                "deterministic DDIM back, or the single-step x0 estimate), MONAI DiffusionModelUNet and "
                "DDPMScheduler, bf16 autocast on GPU; the denoiser wrapped in DDP in multi_gpu_train",
            },
            "name": "AnoDDPM-style diffusion anomaly detection",
            "task": "Unsupervised anomaly detection in 2D slices of brain MRI (and slice by slice in volumes)",
            "description": "A timestep-conditioned denoising UNet trained with DDPM on normal images. At inference "
            "the input is noised to a level t0 with seeded noise and denoised with deterministic DDIM (eta 0); "
            "the anomaly map is the error between the input and its denoised version. Slice scores are map "
            "statistics; volume scores aggregate slice scores.",
            "image_classes": "single channel grey image or volume, intensities scaled to [-1, 1]",
            "value_range": [-1, 1],
            "channel_def": "anomaly map (x - denoised(noised(x)))^2",
            "references": [
                "Wyatt et al., AnoDDPM: Anomaly Detection with Denoising Diffusion Probabilistic Models using "
                "Simplex Noise, CVPR Workshops 2022",
                "Song et al., Denoising Diffusion Implicit Models, ICLR 2021",
            ],
        },
    },
    "diffusion_refined_anomaly": {
        "variant": "variants/gan_refined.json",
        "multi_gpu": {
            "train_objective": _ddp("@diffusion_objective"),
            "train#trainer#objective": "@train_objective",
        },
        # inference.json's fallback when model.pt has no settings: stage 1 as the healthy_gan bundle's defaults
        "inference_defaults": {
            "diffusion": {
                "timesteps": 1000,
                "schedule": "linear_beta",
                "t0": 250,
                "steps": 5,
                "seed": 0,
                "condition": True,
                "noise": "gaussian",
                "coarse": {"model_type": "healthy_gan", "channels": [32, 32, 64, 128, 256, 32], "gan_mask": False},
            }
        },
        "metadata": {
            "version": "0.2.1",
            "changelog": {
                "0.2.1": _RELIABILITY_NOTE,
                "0.2.0": "diffusion_options#noise ('gaussian' or 'simplex'); train_precision replaces the fixed "
                "bf16-on-CUDA rule",
                "0.1.0": "first release: a trained healthy-translation GAN's coarse healthy image, noised to t0 and "
                "refined by a timestep-conditioned MONAI DiffusionModelUNet (conditioned on the coarse image) with "
                "deterministic DDIM; generator and refiner in one inference module and one model.pt; bf16 autocast "
                "on GPU; the denoiser wrapped in DDP in multi_gpu_train",
            },
            "name": "Diffusion-refined healthy-translation GAN anomaly detection",
            "task": "Unsupervised anomaly detection in 2D slices of brain MRI (and slice by slice in volumes)",
            "description": "Stage 1, a trained healthy-translation GAN (coarse_ckpt), turns the input into a coarse "
            "healthy image; stage 2, a timestep-conditioned denoising UNet trained with DDPM on normal images and "
            "conditioned on the coarse image, refines it from noise level t0 with deterministic DDIM. The anomaly "
            "map is |x - refined|; slice scores are map statistics and volume scores aggregate slice scores.",
            "image_classes": "single channel grey image or volume, intensities scaled to [-1, 1]",
            "value_range": [-1, 1],
            "channel_def": "anomaly map |x - refined|",
            "references": [
                "Siddiquee et al., Brainomaly: Unsupervised Neurologic Disease Detection Utilizing Unannotated "
                "T1-weighted Brain MR Images, WACV 2024",
                "Song et al., Denoising Diffusion Implicit Models, ICLR 2021",
            ],
        },
    },
    "supervised_resnet18": {
        "variant": "variants/supervised.json",
        "multi_gpu": {},
        "pred_value_range": [0, 1],
        "metadata": {
            "version": "0.1.1",
            "changelog": {
                "0.1.1": _RELIABILITY_NOTE,
                "0.1.0": "first release: the supervised reference for the unsupervised bundles, MONAI resnet18 "
                "(1 channel, 2 classes, random initialisation) trained with cross-entropy on labelled slices of the "
                "same splits (half of the validation groups join training, the test split is unchanged); the map "
                "is p(abnormal) times MONAI Grad-CAM, the slice score its maximum in the body",
            },
            "name": "Supervised ResNet18 reference",
            "task": "Supervised normal / abnormal slice classification, the reference for the anomaly detectors",
            "description": "Not an anomaly detector: a MONAI ResNet18 trained with cross-entropy on labelled normal "
            "and abnormal slices of the same splits the unsupervised bundles use, so its test numbers are the upper "
            "bound a labelled data set gives. The anomaly map is p(abnormal) times the Grad-CAM of the abnormal "
            "class (peak 1); the slice score is the map's maximum in the body (p(abnormal) when the Grad-CAM peak "
            "is in the body). Volume scores aggregate slice scores as in the other bundles.",
            "image_classes": "single channel grey image or volume, intensities scaled to [0, 1]",
            "value_range": [0, 1],
            "channel_def": "p(abnormal) x Grad-CAM of the abnormal class",
            "references": [
                "He et al., Deep Residual Learning for Image Recognition, CVPR 2016",
                "Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization, "
                "ICCV 2017",
            ],
        },
    },
}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _apply(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``overrides`` set the way ``monai.bundle run`` merges config files (``a#b`` paths)."""
    parser = ConfigParser(copy.deepcopy(config))
    for key, value in overrides.items():
        parser[key] = copy.deepcopy(value)
    return parser.get()


def build(name: str) -> dict[str, str]:
    """The files of bundle ``name`` (path relative to the bundle -> text)."""
    spec = METHODS[name]
    variant = _json(BASE / "configs" / spec["variant"])
    files: dict[str, str] = {}

    def put(rel: str, obj: dict[str, Any]) -> None:
        files[rel] = json.dumps(obj, indent=4) + "\n"

    put("configs/train.json", _apply(_json(BASE / "configs" / "train.json"), variant))
    infer = _json(BASE / "configs" / "inference.json")
    for key in infer["defaults"]:
        value = variant.get(key)
        if value is not None and not (isinstance(value, str) and value[:1] in "$@%"):
            infer["defaults"][key] = value
    infer["defaults"].update(copy.deepcopy(spec.get("inference_defaults", {})))
    put("configs/inference.json", infer)
    put("configs/evaluate.json", _json(BASE / "configs" / "evaluate.json"))
    # an overlay merged on train.json at run time: its "a#b" keys stay keys
    put("configs/multi_gpu_train.json", {**_json(BASE / "configs" / "multi_gpu_train.json"), **spec["multi_gpu"]})

    meta = _json(BASE / "configs" / "metadata.json")
    m = dict(spec["metadata"])
    value_range, channel_def = m.pop("value_range"), m.pop("channel_def")
    meta.update(m)
    fmt = meta["network_data_format"]
    fmt["inputs"]["image"]["value_range"] = value_range
    fmt["outputs"]["pred"]["channel_def"] = {"0": channel_def}
    squared = variant.get("map_method", _json(BASE / "configs" / "train.json")["map_method"]) == "squared"
    fmt["outputs"]["pred"]["value_range"] = spec.get("pred_value_range", [0, 4] if squared else [0, 2])
    meta["eval_metrics"] = {"slice_auroc": "see docs/README.md"}
    put("configs/metadata.json", meta)
    for rel in ("LICENSE", "configs/logging.conf"):
        files[rel] = (BASE / rel).read_text()
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report bundles that are out of date (exit 1 if any)")
    ap.add_argument("names", nargs="*", default=list(METHODS), help=f"bundles to write (default: {list(METHODS)})")
    args = ap.parse_args(argv)
    stale = []
    for name in args.names:
        root = REPO / "bundles" / name
        for rel, text in build(name).items():
            path = root / rel
            if path.is_file() and path.read_text() == text:
                continue
            stale.append(str(path.relative_to(REPO)))
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        if not args.check and not (root / "docs" / "README.md").is_file():
            print(f"{name}: write docs/README.md by hand", file=sys.stderr)
    if args.check and stale:
        print("out of date (run python tools/make_method_bundles.py):\n  " + "\n  ".join(stale), file=sys.stderr)
        return 1
    for s in stale if not args.check else []:
        print("wrote", s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
