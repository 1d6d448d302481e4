"""Ignite handler that measures reconstruction quality (SSIM, MS-SSIM, PSNR) and generative quality (FID, IS) of an
evaluation run and adds them to its report."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, min_version, optional_import
from torch import nn

from monai_anomaly.handlers.scores import _as_items, _identity, _scalar
from monai_anomaly.metrics.inception import InceptionFeatures, is_inception_weights
from monai_anomaly.metrics.quality import (
    ClassifierFeatures,
    frechet_distance,
    inception_score,
    load_feature_network,
    reconstruction_quality_per_sample,
    summarize_quality,
)
from monai_anomaly.reports.writer import _json_safe
from monai_anomaly.utils.enums import AnomalyKeys

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["GenerativeQualityHandler", "QUALITY_SECTION"]

logger = logging.getLogger("monai_anomaly")

QUALITY_SECTION = "Generative and reconstruction quality"
DEFAULT_FEATURE_NOTE = (
    "penultimate (pre-fc) features and softmax of a MONAI ResNet classifier trained in this project, not Inception-v3: "
    "comparable between runs that use the same feature network only, not with the FID / IS of papers"
)
INCEPTION_FEATURE_NOTE = (
    "2048 pool features and softmax of the unbiased 1008-class logits of the standard FID Inception-v3 "
    "(torch-fidelity's weights, given by the user): comparable with the FID / IS of papers that use it"
)
_NO_FEATURES = "none: FID/IS skipped"
_DOMAINS = {0: "normal", 1: "abnormal"}
# FID sets: (name, (domain, kind) of the "generated" side, (domain, kind) of the reference side)
_FID_SETS = (
    ("reconstructed_normal_vs_real_normal", ("normal", "generated"), ("normal", "real")),
    ("translated_abnormal_vs_real_normal", ("abnormal", "generated"), ("normal", "real")),
    ("translated_normal_vs_real_abnormal", ("normal", "to_abnormal"), ("abnormal", "real")),
    ("real_abnormal_vs_real_normal", ("abnormal", "real"), ("normal", "real")),
)
# Inception Score sets: (name, (domain, kind))
_IS_SETS = (
    ("real_normal", ("normal", "real")),
    ("generated_normal", ("normal", "generated")),
    ("real_abnormal", ("abnormal", "real")),
    ("generated_abnormal", ("abnormal", "generated")),
    ("translated_normal_to_abnormal", ("normal", "to_abnormal")),
)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf (identical)"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


class GenerativeQualityHandler:
    """Reconstruction quality of the normals and, with a feature network, FID and Inception Score of an evaluation.

    Attach it to an evaluator whose ``engine.state.output`` holds per-sample dicts with ``image``, ``reconstruction``
    and ``label`` (:class:`~monai_anomaly.engines.evaluator.AnomalyEvaluator` with ``decollate=True``, or a
    batched dict). Every iteration it takes, in order (the first ``max_samples`` of each set, so runs are repeatable):

    - the (image, reconstruction) pairs of label-0 samples: per-sample SSIM, MS-SSIM and PSNR
      (:func:`~monai_anomaly.metrics.quality.reconstruction_quality_per_sample`);
    - with a feature network: the features and class probabilities
      (:class:`~monai_anomaly.metrics.quality.ClassifierFeatures`) of the real images and of the reconstructions
      (the model's healthy translation) of label-0 ("normal") and label-1 ("abnormal") samples.

    At ``EPOCH_COMPLETED`` it computes (``self.result``): the mean SSIM / MS-SSIM / PSNR of the normals; the Frechet
    distance of reconstructed normals vs real normals, of abnormals translated to healthy vs real normals and, as a
    reference, of real abnormals vs real normals; the Inception Score of the real and generated images per domain;
    the feature network used and the size of every set (a set with fewer than 2 samples gets a reason, not a number).
    With ``to_abnormal`` (the normal -> abnormal generator of a two-domain CycleGAN) the normals are also translated
    the other way, and the Frechet distance of translated normals vs real abnormals is reported: FID per domain, in
    both directions, as the brain-MRI CycleGAN work reports it. Each Inception Score is the mean +- std over
    ``is_splits`` equal chunks of its set (10, the usual protocol; fewer when the set is smaller).
    At ``event`` (default ``Events.COMPLETED``) it writes ``quality.json`` to ``output_dir``, appends a
    "Generative and reconstruction quality" section to ``anomaly_report.txt`` (created if absent; an earlier section
    is replaced) and adds ``"quality"`` to ``metrics.json`` when that file exists.

    List it **after** :class:`~monai_anomaly.handlers.report.AnomalyReportHandler` in the evaluator's handlers:
    Ignite calls the handlers of one event in the order they were attached, and the report handler rewrites
    ``anomaly_report.txt`` and ``metrics.json`` at ``COMPLETED``.

    Images go to the feature network at their evaluation size (the size the models were trained at). Their
    intensities are mapped linearly from ``intensity_range`` to ``feature_intensity_range`` (given, or the
    ``intensity_range`` stored in the feature checkpoint's ``settings``) when both are known, else used as they are.

    Args:
        output_dir: the report folder.
        feature_network: the classifier giving the features (an ``nn.Module`` with an ``fc`` / ``classifier`` head),
            a checkpoint path read by :func:`~monai_anomaly.metrics.quality.load_feature_network`, the path of the
            standard FID Inception-v3 weight file (torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``,
            recognised by :func:`~monai_anomaly.metrics.inception.is_inception_weights`; then the numbers compare
            with papers'), or ``None`` (no FID / IS). Never a downloaded network: the user gives the file.
        data_range: intensity range for SSIM / PSNR; default ``intensity_range[1] - intensity_range[0]``, else the
            observed max - min of the real normal images.
        intensity_range: the intensity range the evaluated images are scaled to (the bundle's ``intensity_range``).
        max_samples: at most this many samples per set (the first ones met).
        feature_source_note: how to read the FID / IS numbers, stored with them.
        feature_intensity_range: the intensity range the feature network was trained on.
        output_transform: applied to ``engine.state.output``.
        event: the Ignite event to write at (default ``Events.COMPLETED``).
        device: where to run the feature network (default: the engine's ``state.device``).
        to_abnormal: a normal -> abnormal generator (e.g. ``to_abnormal`` of a two-domain CycleGAN's ``model.pt``:
            :func:`~monai_anomaly.inferers.translate.load_generators`), or ``None``.
        is_splits: chunks the Inception Score is averaged over.

    Raises:
        BadInputError: ``feature_network`` is a path that does not hold a usable classifier.

    Example:
        >>> handlers = [collector, AnomalyReportHandler("eval", collector),  # doctest: +SKIP
        ...             GenerativeQualityHandler("eval", "runs/supervised/models/model.pt", intensity_range=(0, 1))]
        >>> AnomalyEvaluator("cpu", loader, net, val_handlers=handlers).run()  # doctest: +SKIP
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        feature_network: nn.Module | str | os.PathLike | None = None,
        data_range: float | None = None,
        intensity_range: Sequence[float] | None = None,
        max_samples: int = 2000,
        feature_source_note: str = DEFAULT_FEATURE_NOTE,
        feature_intensity_range: Sequence[float] | None = None,
        output_transform: Callable[[Any], Any] = _identity,
        event: Any = None,
        device: str | torch.device | None = None,
        to_abnormal: nn.Module | None = None,
        is_splits: int = 10,
    ) -> None:
        if int(max_samples) < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        if int(is_splits) < 1:
            raise ValueError(f"is_splits must be >= 1, got {is_splits}")
        self.to_abnormal = None if to_abnormal is None else to_abnormal.eval()
        self.is_splits = int(is_splits)
        self.output_dir = os.fspath(output_dir)
        self.max_samples = int(max_samples)
        self.intensity_range = None if intensity_range is None else [float(v) for v in intensity_range]
        self.data_range = float(data_range) if data_range is not None else None
        self.data_range_source = "given" if data_range is not None else None
        if self.data_range is None and self.intensity_range is not None:
            self.data_range = self.intensity_range[1] - self.intensity_range[0]
            self.data_range_source = f"intensity_range {self.intensity_range}"
        self.feature_source_note = feature_source_note
        self.output_transform = output_transform
        self.event = event
        self.device = device
        settings: dict[str, Any] = {}
        self.inception = False
        if isinstance(feature_network, (str, os.PathLike)) and os.fspath(feature_network):
            self.feature_source = os.path.abspath(os.fspath(feature_network))
            if is_inception_weights(feature_network):  # the standard FID / IS network: comparable with papers
                self.inception = True
                self.feature_source = (
                    f"Inception-v3 (2015-12-05, torch-fidelity / pytorch-fid weights) from {self.feature_source}"
                )
                self.feature_source_note = INCEPTION_FEATURE_NOTE
                rng = self.intensity_range if self.intensity_range is not None else (0.0, 1.0)
                self.features = InceptionFeatures(feature_network, intensity_range=(rng[0], rng[1]))
                self.feature_intensity_range = None
                self.result = None
                self.reset()
                return
            feature_network, settings = load_feature_network(feature_network, return_settings=True)
        elif isinstance(feature_network, nn.Module):
            self.feature_source = f"given module: {type(feature_network).__name__}"
        else:
            feature_network, self.feature_source = None, _NO_FEATURES
        self.features = ClassifierFeatures(feature_network) if feature_network is not None else None
        if feature_intensity_range is None and settings.get("intensity_range") is not None:
            feature_intensity_range = settings["intensity_range"]
        self.feature_intensity_range = (
            None if feature_intensity_range is None else [float(v) for v in feature_intensity_range]
        )
        self.result: dict[str, Any] | None = None
        self.reset()

    # ------------------------------------------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget everything collected (called at every ``EPOCH_STARTED``)."""
        self._quality: list[dict[str, Any]] = []
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # pairs kept until the data range is known
        self._n_quality = 0
        self._sets: dict[tuple[str, str], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._n_sets: dict[str, int] = {d: 0 for d in _DOMAINS.values()}
        self._seen = {"normal": 0, "abnormal": 0, "unknown": 0, "without_reconstruction": 0, "other_shape": 0}
        self._shape: tuple[int, ...] | None = None
        self._observed = [math.inf, -math.inf]
        self._moved = False
        self.result = None

    def attach(self, engine: Engine) -> None:
        """Register on ``engine``: reset at ``EPOCH_STARTED``, collect at ``ITERATION_COMPLETED``, compute at
        ``EPOCH_COMPLETED`` and write at ``self.event`` (default ``Events.COMPLETED``)."""
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: self.compute())
        engine.add_event_handler(Events.COMPLETED if self.event is None else self.event, self._write_event)

    def _iteration(self, engine: Engine) -> None:
        if self.features is not None and not self._moved:
            device = self.device if self.device is not None else getattr(engine.state, "device", None)
            if device is not None:
                self.features.model.to(device)
                if self.to_abnormal is not None:
                    self.to_abnormal.to(device)
            self._moved = True
        self.update(self.output_transform(engine.state.output))

    def _write_event(self, engine: Engine) -> None:
        if self.result is None:
            self.compute()
        self.write()

    # ---------------------------------------------------------------------------------------------- collect
    def update(self, output: Any) -> None:
        """Add the samples of one iteration (a list of per-sample dicts or a batched dict)."""
        quality: list[tuple[torch.Tensor, torch.Tensor]] = []
        feats: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {d: [] for d in _DOMAINS.values()}
        for item in _as_items(output):
            label = _scalar(item.get(AnomalyKeys.LABEL), -1)
            try:
                domain = _DOMAINS.get(int(label), "unknown")
            except (TypeError, ValueError):
                domain = "unknown"
            self._seen[domain] += 1
            img, rec = item.get(AnomalyKeys.IMAGE), item.get(AnomalyKeys.RECONSTRUCTION)
            if not isinstance(img, torch.Tensor) or not isinstance(rec, torch.Tensor) or img.shape != rec.shape:
                self._seen["without_reconstruction"] += 1
                continue
            if self._shape is None:
                self._shape = tuple(img.shape)
            if tuple(img.shape) != self._shape:
                self._seen["other_shape"] += 1
                continue
            pair = (img.detach(), rec.detach())
            if domain == "normal" and self._n_quality + len(quality) < self.max_samples:
                quality.append(pair)
            if (
                self.features is not None
                and domain in feats
                and self._n_sets[domain] + len(feats[domain]) < (self.max_samples)
            ):
                feats[domain].append(pair)
        if quality:
            self._add_quality(torch.stack([p[0] for p in quality]), torch.stack([p[1] for p in quality]))
        for domain, pairs in feats.items():
            if pairs:
                self._add_features(domain, torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]))

    def _add_quality(self, images: torch.Tensor, recons: torch.Tensor) -> None:
        self._n_quality += images.shape[0]
        self._observed = [min(self._observed[0], float(images.min())), max(self._observed[1], float(images.max()))]
        if self.data_range is None:  # known only at the end: keep the pairs (at most max_samples)
            self._pending.append((images.cpu(), recons.cpu()))
            return
        per = reconstruction_quality_per_sample(images, recons, self.data_range)
        self._quality.append(per)

    def _to_feature_range(self, x: torch.Tensor) -> torch.Tensor:
        if self.feature_intensity_range is None or self.intensity_range is None:
            return x
        (lo, hi), (flo, fhi) = self.intensity_range, self.feature_intensity_range
        if (lo, hi) == (flo, fhi) or hi == lo:
            return x
        return (x - lo) / (hi - lo) * (fhi - flo) + flo

    def _add_features(self, domain: str, images: torch.Tensor, recons: torch.Tensor) -> None:
        assert self.features is not None
        n = images.shape[0]
        f, p = self.features(self._to_feature_range(torch.cat([images, recons]).float()))
        self._sets.setdefault((domain, "real"), []).append((f[:n], p[:n]))
        self._sets.setdefault((domain, "generated"), []).append((f[n:], p[n:]))
        if domain == "normal" and self.to_abnormal is not None:
            with torch.no_grad():
                dev = next(self.to_abnormal.parameters(), torch.zeros(())).device
                moved = self.to_abnormal(images.float().to(dev)).float().to(images.device)
            ft, pt = self.features(self._to_feature_range(moved))
            self._sets.setdefault((domain, "to_abnormal"), []).append((ft, pt))
        self._n_sets[domain] += n

    # ---------------------------------------------------------------------------------------------- compute
    def _feature_input(self) -> str:
        if self.features is None:
            return "n/a"
        if self.inception:
            lo, hi = self.features.intensity_range
            return (
                f"intensities mapped from [{lo:g}, {hi:g}] to [0, 255], rounded to 8 bits, gray repeated to RGB, "
                "resized to 299 x 299 (TensorFlow-1 bilinear, as torch-fidelity)"
            )
        if self.feature_intensity_range is None or self.intensity_range is None:
            return "images as evaluated (no intensity mapping: the feature network's range is not known)"
        if self.feature_intensity_range == self.intensity_range:
            return f"images as evaluated (intensity range {self.intensity_range})"
        return f"intensities mapped linearly from {self.intensity_range} to {self.feature_intensity_range}"

    def _reconstruction(self) -> dict[str, Any]:
        data_range, source, quality = self.data_range, self.data_range_source, self._quality
        if self._pending:  # no range was given: the observed one
            lo, hi = self._observed
            data_range = hi - lo if hi > lo else 1.0
            source = "observed max - min of the real normal images"
            quality = [reconstruction_quality_per_sample(i, r, data_range) for i, r in self._pending]
        if not quality:
            return {"n": 0, "skipped": "no normal (label 0) sample with a reconstruction"}
        per: dict[str, Any] = dict(quality[0])
        for key in ("ssim", "ms_ssim", "psnr"):
            parts = [q[key].cpu() for q in quality if q[key] is not None]
            per[key] = torch.cat(parts) if parts else None
        out = summarize_quality(per, data_range)
        out["data_range_source"] = source
        return out

    def _set(self, key: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor] | None:
        parts = self._sets.get(key) or []
        if not parts:
            return None
        return torch.cat([f for f, _ in parts]), torch.cat([p for _, p in parts])

    def compute(self) -> dict[str, Any]:
        """The result of what was collected (see the class docstring); also kept in ``self.result``."""
        result: dict[str, Any] = {
            "feature_network": self.feature_source,
            "feature_note": self.feature_source_note if self.features is not None else None,
            "feature_input": self._feature_input(),
            "max_samples_per_set": self.max_samples,
            "n_seen": dict(self._seen),
            "reconstruction_normal": self._reconstruction(),
        }
        if self.features is None:
            reason = "no feature network given (quality_features): FID/IS skipped"
            result["fid"] = {"skipped": reason}
            result["inception_score"] = {"skipped": reason}
            self.result = result
            return result
        built = {k: self._set(k) for k in self._sets}  # each set concatenated once
        fid: dict[str, Any] = {}
        for name, gen_key, ref_key in _FID_SETS:
            if gen_key[1] == "to_abnormal" and self.to_abnormal is None:
                fid[name] = {"skipped": "no normal -> abnormal generator (a two-domain CycleGAN's to_abnormal)"}
                continue
            gen, ref = built.get(gen_key), built.get(ref_key)
            n_gen, n_ref = (0 if gen is None else gen[0].shape[0]), (0 if ref is None else ref[0].shape[0])
            gen_name, ref_name = f"{gen_key[1]}_{gen_key[0]}", f"{ref_key[1]}_{ref_key[0]}"
            entry: dict[str, Any] = {f"n_{gen_name}": n_gen, f"n_{ref_name}": n_ref}
            if min(n_gen, n_ref) < 2:
                entry["skipped"] = f"fewer than 2 samples ({gen_name}: {n_gen}, {ref_name}: {n_ref})"
            else:
                entry["value"] = frechet_distance(ref[0], gen[0])
            fid[name] = entry
        sets = [s for s in built.values() if s is not None]
        fid["feature_dim"] = int(sets[0][0].shape[1]) if sets else None
        result["fid"] = fid
        inc: dict[str, Any] = {}
        for name, key in _IS_SETS:
            if key[1] == "to_abnormal" and self.to_abnormal is None:
                continue
            s = built.get(key)
            n = 0 if s is None else int(s[1].shape[0])
            if n < 2:
                inc[name] = {"n": n, "skipped": f"fewer than 2 samples in {name.replace('_', ' ')} ({n})"}
            else:
                splits = min(self.is_splits, n // 2)
                mean, std = inception_score(s[1], splits=splits)
                inc[name] = {"n": n, "value": mean, "std": std, "splits": splits}
        n_classes = int(sets[0][1].shape[1]) if sets else None
        inc["n_classes"] = n_classes
        inc["note"] = f"lies in [1, {n_classes}] for a {n_classes}-class classifier" if n_classes else None
        result["inception_score"] = inc
        self.result = result
        return result

    # ------------------------------------------------------------------------------------------------ write
    def report_lines(self) -> list[str]:
        """The report section, in words."""
        r = self.result or self.compute()
        lines = [QUALITY_SECTION, "-" * len(QUALITY_SECTION)]
        lines.append(f"feature network: {r['feature_network']}")
        if r["feature_note"]:
            lines.append(f"  {r['feature_note']}")
            lines.append(f"  feature input: {r['feature_input']}")
        seen = r["n_seen"]
        lines.append(
            f"samples seen: {seen['normal']} normal, {seen['abnormal']} abnormal, {seen['unknown']} unknown label"
            + (f", {seen['without_reconstruction']} without a reconstruction" if seen["without_reconstruction"] else "")
            + (f", {seen['other_shape']} of another size (left out)" if seen["other_shape"] else "")
            + f"; at most {r['max_samples_per_set']} per set"
        )
        q = r["reconstruction_normal"]
        if "skipped" in q:
            lines.append(f"reconstruction of normals: skipped ({q['skipped']})")
        else:
            ms = f"{_fmt(q['ms_ssim'])} ({q['ms_ssim_scales']} scales)" if q["ms_ssim"] is not None else "n/a"
            lines.append(
                f"reconstruction of normals (n={q['n']}): SSIM {_fmt(q['ssim'])}, MS-SSIM {ms}, "
                f"PSNR {_fmt(q['psnr'], 2)} dB (data range {_fmt(q['data_range'], 3)}: {q['data_range_source']})"
            )
            if q.get("ms_ssim_note"):
                lines.append(f"  MS-SSIM: {q['ms_ssim_note']}")
        for title, key in (("FID", "fid"), ("Inception Score", "inception_score")):
            block = r[key]
            if "skipped" in block:
                lines.append(f"{title}: skipped ({block['skipped']})")
                continue
            if key == "fid":
                lines.append(f"{title} ({block['feature_dim']}-d features; lower is closer):")
            else:
                lines.append(f"{title} (higher is more confident and more varied; {block['note']}):")
            for name, v in block.items():
                if not isinstance(v, Mapping):
                    continue
                ns = ", ".join(f"{k} {n}" for k, n in v.items() if k.startswith("n"))
                if "skipped" in v:
                    shown = v["skipped"]
                elif "splits" in v:
                    shown = f"{_fmt(v['value'])} +- {_fmt(v['std'])} over {v['splits']} split(s)"
                else:
                    shown = _fmt(v["value"]) + (f" (std {_fmt(v['std'])})" if "std" in v and v["std"] else "")
                lines.append(f"  {name.replace('_', ' ')}: {shown} ({ns})")
        return lines

    def write(self) -> dict[str, str]:
        """Write ``quality.json``, the report section and ``metrics.json``'s ``quality``; returns the paths."""
        r = self.result or self.compute()
        os.makedirs(self.output_dir, exist_ok=True)
        safe = _json_safe(r)
        files = {name: os.path.join(self.output_dir, name) for name in ("quality.json", "anomaly_report.txt")}
        with open(files["quality.json"], "w") as f:
            json.dump(safe, f, indent=2)
        text = ""
        if os.path.exists(files["anomaly_report.txt"]):
            with open(files["anomaly_report.txt"]) as f:
                text = f.read()
            header = f"{QUALITY_SECTION}\n{'-' * len(QUALITY_SECTION)}\n"
            at = 0 if text.startswith(header) else text.find("\n" + header)
            if at >= 0:  # a section of an earlier write: replace it
                text = text[:at]
            if text and not text.endswith("\n"):
                text += "\n"
        with open(files["anomaly_report.txt"], "w") as f:
            f.write(text + ("\n" if text else "") + "\n".join(self.report_lines()) + "\n")
        metrics_path = os.path.join(self.output_dir, "metrics.json")
        if os.path.exists(metrics_path):
            with open(metrics_path) as f:
                metrics = json.load(f)
            metrics["quality"] = safe
            if isinstance(metrics.get("files"), list) and "quality.json" not in metrics["files"]:
                metrics["files"] = sorted([*metrics["files"], "quality.json"])
            with open(metrics_path, "w") as f:
                json.dump(metrics, f, indent=2)
            files["metrics.json"] = metrics_path
        logger.info("generative and reconstruction quality written to %s", files["quality.json"])
        return files
