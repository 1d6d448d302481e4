"""Command line: ``python -m monai_anomaly {train,evaluate,infer,demo,bundles,config}`` (also ``monai-anomaly``).

Every sub-command runs a bundle's configs through :func:`monai.bundle.run`, so the CLI and
``python -m monai.bundle run --config_file ...`` are the same thing underneath; extra ``--key value`` flags override
config ids (e.g. ``--max_epochs 5 --image_size 64``).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["AnomalyCLI", "find_bundle", "run_bundle", "sample_data_dir", "main"]

DEFAULT_BUNDLE = "autoencoder_anomaly"
logger = logging.getLogger("monai_anomaly")


def _bundle_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("MONAI_ANOMALY_BUNDLES"):
        dirs.append(Path(os.environ["MONAI_ANOMALY_BUNDLES"]))
    dirs.append(Path(__file__).resolve().parents[1] / "bundles")  # source checkout / editable install
    return dirs


def find_bundle(bundle: str | os.PathLike) -> Path:
    """Return the folder of a bundle given its name (looked up in ``bundles/``) or its path.

    Raises:
        FileNotFoundError: when no such bundle exists; the message lists the bundles that do.
    """
    p = Path(bundle).expanduser()
    if (p / "configs").is_dir():
        return p.resolve()
    for d in _bundle_dirs():
        if (d / str(bundle) / "configs").is_dir():
            return (d / str(bundle)).resolve()
    known = sorted({b.name for d in _bundle_dirs() if d.is_dir() for b in d.iterdir() if (b / "configs").is_dir()})
    raise FileNotFoundError(
        f"no bundle '{bundle}': give a bundle folder or one of {known} "
        "(set MONAI_ANOMALY_BUNDLES to the folder holding the bundles when the package is not installed from source)."
    )


def sample_data_dir() -> Path:
    """The embedded demo sample (200 normal + 100 tumour brain MRI slices, CC0), shipped inside the package."""
    return Path(str(resources.files("monai_anomaly") / "sample_data"))


def _extra_configs(config: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``--config`` values: config files merged after the base ones (a bundle-relative name such as
    ``variants/dae.json`` or ``protocols/medianomaly.json``, or a path); a comma-separated string or a list."""
    if not config:
        return []
    items = config.split(",") if isinstance(config, str) else [str(c) for c in config]
    return [c.strip() for c in items if c.strip()]


def run_bundle(bundle: str | os.PathLike, configs: list[str], **override: Any) -> None:
    """Run ``python -m monai.bundle run`` on ``bundle`` with ``configs`` merged in order and ``override`` applied.

    A config given as an existing path is used as it is; otherwise it is looked up in the bundle's ``configs/``.
    """
    from monai.bundle import run

    root = find_bundle(bundle)
    files = [c if Path(c).is_file() else str(root / "configs" / c) for c in configs]
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"{f}: config file not found in bundle {root}")
    logging_file = root / "configs" / "logging.conf"
    run(
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=files if len(files) > 1 else files[0],
        logging_file=str(logging_file) if logging_file.is_file() else None,
        bundle_root=str(root),
        **override,
    )


def _prepare_output(output_dir: str | os.PathLike, overwrite: bool, marker: str) -> Path:
    out = Path(output_dir).expanduser().resolve()
    if (out / marker).exists() and not overwrite:
        raise FileExistsError(
            f"{out}: already holds {marker}; pass --overwrite to replace it (or choose another --output_dir)."
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def _demo_summary(report: Path, infer_dir: Path, total: float) -> str:
    """What the demo found and where to look, in plain words."""
    import json

    m = json.loads((report / "metrics.json").read_text())
    sl = (m.get("slice") or {}).get("metrics") or {}
    lines = [
        "",
        "monai_anomaly demo",
        "==================",
        "Trained on the slices of one healthy T1 brain volume (IXI012), thresholds fitted on a second healthy one",
        "(IXI015), tested on IXI015 with two SYNTHETIC lesions (demo data only, not a benchmark).",
        f"Slice AUROC {sl.get('auroc', float('nan')):.3f}, AUPRC {sl.get('auprc', float('nan')):.3f}: AUROC is the "
        "chance that a slice through a lesion scores above a lesion-free slice (0.5 is chance, 1 perfect).",
        f"  report:   {report / 'anomaly_report.txt'}",
        f"  pictures: {report}/roc_curve.png, score_distribution.png, top_anomaly_*.png (image | heatmap | overlay)",
        "Whole scans scored end to end (volume score = mean of the top 5 % slice scores):",
    ]
    scans = json.loads((infer_dir / "scores.json").read_text())["scans"]
    for sc in scans:
        vt = sc.get("volume_threshold")
        lines.append(
            f"  {sc['volume_id']}: volume score {sc['volume_score']:.4g} vs threshold "
            f"{'n/a' if vt is None else f'{vt:.4g}'} -> {sc.get('prediction')}"
        )
        lines.append(f"    heatmap: {sc.get('anomaly_map')}")
    lines += [
        "  open a heatmap over its scan in 3D Slicer or ITK-SNAP (same affine); per-slice scores: "
        f"{infer_dir / 'detailed_results.csv'}",
        f"Finished in {total:.0f} s. Measured results on real data: docs/benchmarks.md.",
    ]
    return "\n".join(lines)


class AnomalyCLI:
    """Unsupervised anomaly detection in medical images (MONAI plugin). Run a sub-command with --help for details."""

    def train(
        self,
        dataset_dir: str,
        output_dir: str = "runs/autoencoder_anomaly",
        bundle: str = DEFAULT_BUNDLE,
        resume: bool = False,
        overwrite: bool = False,
        config: str | None = None,
        **override: Any,
    ) -> str:
        """Train a bundle's model on the normal images of ``dataset_dir`` (any supported layout).

        Checkpoints (best and last) go to ``<output_dir>/models``, TensorBoard logs to ``<output_dir>/logs`` and the
        validation report to ``<output_dir>/eval``.

        Args:
            dataset_dir: folder in one of the supported layouts (see docs/data.md) or a CSV manifest.
            output_dir: where checkpoints, logs and the report go.
            bundle: bundle name (in bundles/) or path.
            resume: continue from the last checkpoint in ``<output_dir>/models``.
            overwrite: replace an existing run in ``output_dir``.
            config: extra config files merged on train.json, e.g. ``variants/dae.json`` (the coarse-noise denoising
                autoencoder) or ``protocols/medianomaly.json`` (the published protocol); comma-separated.
            override: other config ids, e.g. ``--max_epochs 20 --image_size 64 --model_type vae``.
        """
        marker = "models/model.pt"
        out = _prepare_output(output_dir, overwrite or resume, marker)
        run_bundle(
            bundle,
            ["train.json", *_extra_configs(config)],
            dataset_dir=str(dataset_dir),
            output_dir=str(out),
            resume=resume,
            **override,
        )
        return str(out / marker)

    def evaluate(
        self,
        dataset_dir: str,
        output_dir: str = "runs/autoencoder_anomaly",
        bundle: str = DEFAULT_BUNDLE,
        overwrite: bool = False,
        config: str | None = None,
        **override: Any,
    ) -> str:
        """Score the test split of ``dataset_dir`` with the model trained in ``output_dir`` and write the report.

        Pass the same ``--config`` (and overrides) as to ``train``, so that the split and the network match.

        The report (CSV of every score, metrics.json, anomaly_report.txt, ROC/PR curves, score histograms, heatmap
        panels, NIfTI maps for volumes) goes to ``<output_dir>/eval``.
        """
        out = Path(output_dir).expanduser().resolve()
        if not (out / "models" / "model.pt").is_file():
            raise FileNotFoundError(f"{out / 'models' / 'model.pt'}: no trained model; run `train` first.")
        if (out / "eval" / "metrics.json").exists() and not overwrite:
            raise FileExistsError(f"{out / 'eval'}: already holds a report; pass --overwrite to replace it.")
        run_bundle(
            bundle,
            ["train.json", "evaluate.json", *_extra_configs(config)],
            dataset_dir=str(dataset_dir),
            output_dir=str(out),
            overwrite=bool(overwrite),
            **override,
        )
        return str(out / "eval")

    def infer(
        self,
        input: str,
        output_dir: str = "runs/infer",
        ckpt: str | None = None,
        bundle: str = DEFAULT_BUNDLE,
        overwrite: bool = False,
        **override: Any,
    ) -> str:
        """Score images or volumes: per-slice scores, one score per volume, and the anomaly map as NIfTI.

        Args:
            input: a file (PNG/JPEG/NIfTI/.dcm), a DICOM series folder, or a folder of such files/series.
            output_dir: where ``slice_scores.csv``, ``volume_scores.csv``, ``scores.json`` and the maps go.
            ckpt: the trained inference checkpoint (default: the bundle's ``models/model.pt``).
        """
        out = _prepare_output(output_dir, overwrite, "volume_scores.csv")
        if ckpt is not None:
            override["ckpt_path"] = str(Path(ckpt).expanduser().resolve())
        run_bundle(
            bundle, ["inference.json"], input_path=str(input), output_dir=str(out), overwrite=overwrite, **override
        )
        return str(out)

    def demo(self, output_dir: str = "monai_anomaly_demo", overwrite: bool = False, **override: Any) -> str:
        """Train, evaluate and run inference on the embedded 3D sample, and say where to look.

        The sample (``monai_anomaly/sample_data/volumes``) is two healthy IXI T1 brain volumes and a copy of the
        second with two clearly labelled SYNTHETIC lesions. The demo trains the default autoencoder on the slices
        of the first volume, fits the thresholds on the second (healthy) one, evaluates slice by slice on the
        lesion copy (report in ``<output_dir>/eval``: AUROC, curves, heatmap panels, NIfTI maps), then scores both
        volumes of the second subject end to end (``<output_dir>/infer``: a volume score and prediction each,
        per-slice scores, NIfTI heatmaps on the scans' own grid). About a minute on 2 CPU cores; options such as
        ``--max_epochs`` or ``--image_size`` are passed to the bundle.
        """
        out = Path(output_dir).expanduser().resolve()
        if out.exists() and any(out.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{out}: not empty; pass --overwrite to replace it.")
            shutil.rmtree(out)
        # about 60 training slices: small batches and 100 epochs give the network ~400 steps in under a minute
        settings = {"max_epochs": 100, "image_size": 64, "batch_size": 16, "val_interval": 20, **override}
        t0 = time.time()
        vol_dir = sample_data_dir() / "volumes"
        manifest = str(vol_dir / "manifest.csv")
        self.train(manifest, str(out), **settings)
        report = self.evaluate(manifest, str(out), **{k: v for k, v in settings.items() if k != "val_interval"})
        scans = out / "scans"
        scans.mkdir(parents=True, exist_ok=True)
        for name in ("IXI015-HH-1258_T1.nii.gz", "IXI015-HH-1258_T1_SYNTHETIC_LESION.nii.gz"):
            shutil.copyfile(vol_dir / name, scans / name)
        infer_dir = self.infer(str(scans), str(out / "infer"), ckpt=str(out / "models" / "model.pt"))
        print(_demo_summary(Path(report), Path(infer_dir), time.time() - t0))
        return report

    def bundles(self) -> list[str]:
        """List the bundles this installation knows."""
        return sorted({b.name for d in _bundle_dirs() if d.is_dir() for b in d.iterdir() if (b / "configs").is_dir()})

    def config(self) -> None:
        """Print the versions of monai_anomaly and everything it uses."""
        from monai_anomaly.utils.config import print_config

        print_config()

    def audit(
        self,
        dataset_dir: str,
        output_dir: str = "audit",
        overwrite: bool = False,
        skip_bad: bool = False,
        hash_threshold: int = 4,
        min_correlation: float | None = None,
        hash_method: str = "phash",
        hash_size: int = 8,
        layout: str = "auto",
        default_label: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.3,
        seed: int = 0,
        warn_auroc: float = 0.8,
    ) -> None:
        """Audit a data set before trusting a number: duplicates, split leaks, label conflicts, shortcuts.

        Finds near-duplicate groups (perceptual hash) and exact copies, the groups that cross the train/val/test split
        the bundles use or hold both classes, per-class file statistics, and a cross-validated "shortcut AUROC" of a
        trivial classifier on those statistics alone. Writes audit_report.txt, audit.json, audit_images.csv,
        duplicate_groups.csv, audit_features.png and audit_shortcut.png to ``output_dir`` (see docs/audit.md).

        Args:
            dataset_dir: folder in one of the supported layouts (see docs/data.md) or a CSV manifest.
            output_dir: where the report goes (must not exist or be empty, unless ``overwrite``).
            overwrite: write into an existing non-empty ``output_dir``.
            skip_bad: skip unreadable files (listed in the report) instead of stopping at the first.
            hash_threshold: largest Hamming distance between two files' hashes that makes them near-duplicates.
            min_correlation: also require the two files' 32x32 thumbnails to correlate this much (e.g. 0.98), for
                sets where hash links chain distinct images (the report warns when they do).
            hash_method: ``phash`` or ``dhash``.
            hash_size: hash side (8: 64-bit hashes, 16: 256-bit).
            layout: ``auto`` or a layout name; default_label: label of volumes in a folder without labels.csv.
            val_fraction, test_fraction, seed: the split to check (the bundle's train.json defaults).
            warn_auroc: shortcut AUROC at or above which the report warns.
        """
        from monai_anomaly.data.audit import audit_dataset, check_output_dir, write_audit_report

        check_output_dir(output_dir, overwrite)  # fail before reading thousands of files
        result = audit_dataset(
            dataset_dir,
            layout=layout,
            skip_bad=skip_bad,
            default_label=default_label,
            hash_method=hash_method,
            hash_size=hash_size,
            hash_threshold=hash_threshold,
            min_correlation=min_correlation,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            warn_auroc=warn_auroc,
        )
        out = write_audit_report(result, output_dir, overwrite=overwrite)
        print("\n".join(f"- {s}" for s in result.findings))
        print(f"audit report written to {out} (start with {out / 'audit_report.txt'})")


def main(argv: list[str] | None = None) -> None:
    import fire

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fire.Fire(AnomalyCLI, command=argv if argv is not None else sys.argv[1:], name="monai_anomaly")


if __name__ == "__main__":
    main()
