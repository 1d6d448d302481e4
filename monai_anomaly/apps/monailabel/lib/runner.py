"""Run one anomaly bundle's ``inference.json`` on one scan and write its heatmap: the MONAI Label task's engine.

This module needs only MONAI (not MONAI Label), so it is tested in the main environment; the MONAI Label task in
:mod:`monai_anomaly.apps.monailabel.lib.infer` is a thin wrapper around :class:`AnomalyBundleRunner`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.inferers import SimpleInferer
from monai.utils import CommonKeys, optional_import

from monai_anomaly.data.inputs import scan_id
from monai_anomaly.transforms.spatial import restore_geometry
from monai_anomaly.utils.checkpoints import load_checkpoint
from monai_anomaly.utils.enums import AnomalyKeys
from monai_anomaly.utils.errors import BadInputError

nib, _ = optional_import("nibabel")
PILImage, _ = optional_import("PIL.Image")

__all__ = ["RESULT_FIELDS", "MAP_EXTENSIONS", "BundleError", "AnomalyBundleRunner", "restore_geometry", "write_map"]

logger = logging.getLogger("monai_anomaly")

RESULT_FIELDS = ("volume_score", "slice_scores", "threshold", "prediction")
"""The fields every answer holds (the bundle's ``postprocessing`` fills them in ``d["result"]``)."""

MAP_EXTENSIONS = (".nii.gz", ".nii", ".png")
"""File types the heatmap can be written as (``.png``: 8-bit, 2D only)."""

_KEYS = ("network_def", "preprocessing", "postprocessing")
_MAP_KEYS = (CommonKeys.PRED, AnomalyKeys.ANOMALY_MAP)
"""Where the runner puts the network's map for ``postprocessing``: ``pred`` (as MONAI's evaluators do, so a bundle's
``inference.json`` postprocessing works unchanged) and ``anomaly_map`` (the project's name)."""


class BundleError(RuntimeError):
    """A bundle that cannot be served (missing config, key or checkpoint; a postprocessing that breaks the contract).

    Example:
        >>> str(BundleError("bundles/x", "no configs/inference.json"))
        'bundle bundles/x: no configs/inference.json'
    """

    def __init__(self, bundle: str | os.PathLike, problem: str) -> None:
        self.bundle = str(bundle)
        self.problem = problem
        super().__init__(f"bundle {self.bundle}: {problem}")


def _jsonable(x: Any) -> Any:
    """Python scalars/lists/dicts from tensors, arrays and numpy scalars (for the JSON answer)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _affine(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return a.astype(np.float64) if a.shape in ((4, 4), (3, 3)) else None


def write_map(anomaly_map: torch.Tensor, path: str | os.PathLike) -> dict[str, Any]:
    """Write a ``(1, H, W[, D])`` map as float32 NIfTI (with its affine) or, for 2D, as an 8-bit grey PNG.

    The PNG is scaled so that 255 is the map's maximum (returned as ``map_max`` so the values can be recovered).

    Returns:
        ``{"map_shape": [...], "map_max": float}``.
    """
    path = str(path)
    arr = anomaly_map.detach().cpu().float()
    vmax = float(arr.max()) if arr.numel() else 0.0
    info = {"map_shape": list(arr.shape[1:]), "map_max": vmax}
    if path.lower().endswith(".png"):
        if arr.ndim != 3:
            raise ValueError(f"a PNG heatmap needs a 2D map, got shape {tuple(arr.shape)}")
        scale = 255.0 / vmax if vmax > 0 else 0.0
        u8 = np.clip(arr[0].numpy() * scale, 0, 255).round().astype(np.uint8)
        PILImage.fromarray(u8, mode="L").save(path)
        return info
    affine = _affine(anomaly_map.affine) if isinstance(anomaly_map, MetaTensor) else None
    if affine is None:
        affine = np.eye(4)
    elif affine.shape == (3, 3):  # a 2D affine: embed it in 3D for NIfTI
        a4 = np.eye(4)
        a4[:2, :2], a4[:2, 3] = affine[:2, :2], affine[:2, 2]
        affine = a4
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr[0].numpy(), dtype=np.float32), affine), path)
    return info


class AnomalyBundleRunner:
    """Load an anomaly bundle's ``configs/inference.json`` and run it on scans, one at a time.

    The bundle contract (see ``docs/monailabel.md``): ``network_def`` is the anomaly model
    (:class:`~monai_anomaly.networks.anomaly_net.AnomalyMapNet`); ``preprocessing`` is a dictionary transform on the
    datalist item ``{"image": <file path>, "volume_id": <file stem>, "label": -1}``; ``inferer``
    (:class:`~monai_anomaly.inferers.slice.AnomalySliceInferer`, the one ``infer`` and ``monai.bundle run`` use) runs
    the model on the ``(1, 1, H, W[, D])`` batch with its ``foreground`` and returns the map and the slice scores;
    ``postprocessing`` (:class:`~monai_anomaly.transforms.postprocessing.VolumeAnomalyScored`) reads that from
    ``d["pred"]``, leaves the map there and fills ``d["result"]`` with ``volume_score``, ``slice_scores``,
    ``threshold`` and ``prediction``. A plain inferer whose output is a map tensor works too (``d["pred"]`` and
    ``d["anomaly_map"]`` then hold the map). The weights are read from
    ``<bundle>/models/model.pt`` (a state dict, or a dict holding one under ``"model"``), once, on first use; a
    config id ``ckpt_path`` is set to that file, so ids derived from it (the fitted ``threshold``) read it too. The
    heatmap returned is the map as the postprocessing left it (under ``pred``, else ``anomaly_map``).

    Args:
        bundle_dir: the bundle folder.
        config_file: the inference config, relative to ``bundle_dir`` (``.json`` or ``.yaml``).
        checkpoint: the weights file, relative to ``bundle_dir`` (or an absolute path).
        device: torch device (overrides the config's ``device``).

    Raises:
        BundleError: a missing config, config key or checkpoint.

    Example:
        >>> runner = AnomalyBundleRunner("bundles/autoencoder_anomaly")  # doctest: +SKIP
        >>> heatmap, result = runner("case1.nii.gz")  # doctest: +SKIP
        >>> result["volume_score"], result["prediction"]  # doctest: +SKIP
        (0.0123, 'normal')
    """

    def __init__(
        self,
        bundle_dir: str | os.PathLike,
        config_file: str = "configs/inference.json",
        checkpoint: str = "models/model.pt",
        device: str | torch.device = "cpu",
    ) -> None:
        self.bundle_dir = Path(bundle_dir).expanduser().resolve()
        self.name = self.bundle_dir.name
        self.config_path = self.bundle_dir / config_file
        self.checkpoint_path = self.bundle_dir / checkpoint
        self.device = torch.device(device)
        if not self.config_path.is_file():
            raise BundleError(self.bundle_dir, f"no {config_file}")
        if not self.checkpoint_path.is_file():
            raise BundleError(self.bundle_dir, f"no weights at {checkpoint} (train the bundle first)")
        self.parser = ConfigParser()
        try:
            self.parser.read_config(str(self.config_path))
        except Exception as e:
            raise BundleError(self.bundle_dir, f"cannot read {config_file}: {e}") from e
        missing = [k for k in _KEYS if k not in self.parser.config]
        if missing:
            raise BundleError(self.bundle_dir, f"{config_file} lacks {', '.join(missing)}")
        self.parser["bundle_root"] = str(self.bundle_dir)
        self.parser["device"] = f"$torch.device('{self.device}')"
        if "ckpt_path" in self.parser.config:  # ids derived from it (the fitted threshold) read the served weights
            if str(self.checkpoint_path)[:1] in ("$", "@", "%"):  # the parser would evaluate it, not read it
                raise BundleError(self.bundle_dir, f"checkpoint path {str(self.checkpoint_path)!r} starts with $/@/%")
            self.parser["ckpt_path"] = str(self.checkpoint_path)
        self.metadata = self._read_metadata()
        self.version = str(self.metadata.get("version", ""))
        self.description = str(self.metadata.get("description", f"anomaly detection bundle {self.name}"))
        self._lock = threading.Lock()
        self._parts: dict[str, Any] | None = None

    def _read_metadata(self) -> dict[str, Any]:
        path = self.bundle_dir / "configs" / "metadata.json"
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            logger.warning("cannot read %s", path)
            return {}

    def _load(self) -> dict[str, Any]:
        with self._lock:
            if self._parts is not None:
                return self._parts
            self.parser.parse(reset=True)
            try:
                network = self.parser.get_parsed_content("network_def", instantiate=True)
                pre = self.parser.get_parsed_content("preprocessing", instantiate=True)
                post = self.parser.get_parsed_content("postprocessing", instantiate=True)
                inferer = (
                    self.parser.get_parsed_content("inferer", instantiate=True)
                    if "inferer" in self.parser.config
                    else SimpleInferer()
                )
            except Exception as e:
                raise BundleError(self.bundle_dir, f"cannot build its parts from {self.config_path.name}: {e}") from e
            try:  # weights only: a checkpoint is never allowed to run code
                state = load_checkpoint(self.checkpoint_path, map_location=self.device)
            except Exception as e:
                raise BundleError(self.bundle_dir, f"cannot read {self.checkpoint_path.name}: {_first_line(e)}") from e
            if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
                state = state["model"]
            try:
                network.load_state_dict(state)
            except Exception as e:
                raise BundleError(self.bundle_dir, f"{self.checkpoint_path.name} does not fit network_def: {e}") from e
            network.to(self.device).eval()
            self._parts = {"network": network, "pre": pre, "post": post, "inferer": inferer}
            return self._parts

    def __call__(
        self, image_path: str | os.PathLike, threshold: float | None = None
    ) -> tuple[MetaTensor, dict[str, Any]]:
        """Score one scan.

        Args:
            image_path: a NIfTI file, a DICOM series folder or file, or a PNG/JPEG image.
            threshold: a volume-score threshold that overrides the bundle's for the prediction.

        Returns:
            the heatmap on the file's voxel grid (affine = the file's) and the JSON-able result
            (``volume_score``, ``slice_scores``, ``threshold`` (the bundle's, as it reports it: a number or a dict
            with ``value``, ``method``, ...), ``volume_threshold`` (the number ``prediction`` compares
            ``volume_score`` with), ``prediction``, ``bundle``, ``bundle_version``, ...).

        Raises:
            BadInputError: the file cannot be loaded, or is neither a 2D image nor a 3D volume.
            BundleError: the bundle's parts fail or break the contract.
        """
        path = str(image_path)
        if not os.path.exists(path):
            raise BadInputError(path, "no such file or folder")
        parts = self._load()
        try:
            d = parts["pre"]({AnomalyKeys.IMAGE: path, AnomalyKeys.VOLUME_ID: scan_id(path), AnomalyKeys.LABEL: -1})
        except BadInputError:
            raise
        except Exception as e:  # Compose wraps errors in "applying transform ...": report the innermost one
            cause = _root_cause(e)
            if isinstance(cause, BadInputError):
                raise cause from e
            problem = f"cannot be read as an image ({type(cause).__name__}: {_first_line(cause)})"
            raise BadInputError(path, problem) from e
        if isinstance(d, list):  # a preprocessing that splits: not for serving
            raise BundleError(self.bundle_dir, "preprocessing returned a list; expected one dictionary")
        image = d[AnomalyKeys.IMAGE]
        if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4):
            shape = tuple(getattr(image, "shape", ()))
            raise BadInputError(
                path, f"has shape {shape} after loading; expected a 2D image (1, H, W) or a 3D volume (1, H, W, D)"
            )
        fg = d.get(AnomalyKeys.FOREGROUND)
        kwargs = {} if fg is None else {"foreground": torch.as_tensor(fg).unsqueeze(0).to(self.device)}
        with torch.no_grad():
            batch = image.unsqueeze(0).to(self.device)
            out = parts["inferer"](batch, parts["network"], **kwargs)
        meta = dict(image.meta) if isinstance(image, MetaTensor) else {}
        if isinstance(out, Mapping):  # AnomalySliceInferer: the map and the slice scores of the one scan
            pred = {k: v[0].detach().cpu() for k, v in out.items()}
            raw = pred[AnomalyKeys.ANOMALY_MAP]
        else:  # a plain map network and inferer
            out = out[0] if isinstance(out, (tuple, list)) else out
            raw = pred = out[0].detach().cpu() if isinstance(out, torch.Tensor) else out
        if not isinstance(raw, torch.Tensor) or tuple(raw.shape[1:]) != tuple(image.shape[1:]):
            got, want = tuple(getattr(raw, "shape", ())), ", ".join(map(str, image.shape[1:]))
            raise BundleError(self.bundle_dir, f"inferer gave a map of shape {got}; expected (C, {want})")
        raw = MetaTensor((raw.as_tensor() if isinstance(raw, MetaTensor) else raw)[:1].float(), meta=meta)
        d[CommonKeys.PRED] = pred if isinstance(pred, Mapping) else raw
        d[AnomalyKeys.ANOMALY_MAP] = raw
        try:
            d = parts["post"](d)
        except Exception as e:
            cause = _root_cause(e)
            problem = f"postprocessing failed: {type(cause).__name__}: {_first_line(cause)}"
            raise BundleError(self.bundle_dir, problem) from e
        result = self._result(d, threshold)
        maps = [d.get(k) for k in _MAP_KEYS if isinstance(d.get(k), torch.Tensor)]
        if not maps:
            raise BundleError(self.bundle_dir, f"postprocessing left no map (d[{_MAP_KEYS[0]!r}])")
        heatmap = next((m for m in maps if m is not raw), maps[0])  # the one the postprocessing changed, if any
        if not isinstance(heatmap, MetaTensor) or _affine(heatmap.meta.get("affine")) is None:
            heatmap = MetaTensor(torch.as_tensor(heatmap), meta=meta)
        if heatmap.ndim == image.ndim - 1:
            heatmap = heatmap.unsqueeze(0)
        heatmap = restore_geometry(heatmap[:1], image)
        # the shapes of the input file's own grid (the heatmap is written on it), in the same axis order as map_shape
        grid = meta.get("spatial_shape")
        grid = [int(x) for x in np.asarray(grid).ravel()] if grid is not None else list(heatmap.shape[1:])
        result.update(
            {
                "bundle": self.name,
                "bundle_version": self.version,
                "image_shape": grid,
                "spatial_dims": int(image.ndim - 1),  # 2 for a 2D image, 3 for a volume
            }
        )
        return heatmap, result

    def _result(self, d: Mapping[Any, Any], threshold: float | None) -> dict[str, Any]:
        r = dict(d.get(AnomalyKeys.RESULT) or {})
        if r.get("volume_score") is None:  # a 2D-only postprocessing: the image score is the volume score
            for key in (AnomalyKeys.VOLUME_SCORE, AnomalyKeys.SCORE):
                if d.get(key) is not None:
                    r["volume_score"] = d[key]
                    break
        if r.get("volume_score") is None:
            raise BundleError(self.bundle_dir, "postprocessing gave no d['result']['volume_score']")
        r = _jsonable(r)
        r["volume_score"] = float(r["volume_score"])
        if r.get("slice_scores") is None:
            r["slice_scores"] = [r["volume_score"]]
        r.setdefault("threshold", None)
        r.setdefault("prediction", None)
        if "volume_threshold" not in r and r["threshold"] is not None:  # a bundle giving one number
            value = r["threshold"].get("value") if isinstance(r["threshold"], Mapping) else r["threshold"]
            r["volume_threshold"] = None if value is None else float(value)
        if threshold is not None:
            t = float(threshold)
            r.update(
                threshold={"value": t, "method": "request"} if isinstance(r["threshold"], Mapping) else t,
                volume_threshold=t,
                threshold_source="request",
                prediction="anomalous" if r["volume_score"] >= t else "normal",
            )
        else:
            r.setdefault("threshold_source", "bundle")
        return r

    def infer_to_file(
        self,
        image_path: str | os.PathLike,
        threshold: float | None = None,
        extension: str | None = None,
        output_dir: str | os.PathLike | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Score one scan and write its heatmap to a new file (``.nii.gz`` unless ``extension`` says ``.nii``/``.png``).

        Returns:
            the heatmap file's path and the JSON-able result (with ``map_shape`` and ``map_max`` added).

        Raises:
            BadInputError: as :meth:`__call__`, or an extension the map cannot be written as.
        """
        ext = (extension or ".nii.gz").lower()
        ext = ext if ext.startswith(".") else f".{ext}"
        if ext not in MAP_EXTENSIONS:
            raise BadInputError(str(image_path), f"heatmap type {ext!r} not supported; use one of {MAP_EXTENSIONS}")
        heatmap, result = self(image_path, threshold=threshold)
        if ext == ".png" and heatmap.ndim != 3:
            raise BadInputError(str(image_path), "a PNG heatmap needs a 2D image; use .nii.gz for volumes")
        fd, out = tempfile.mkstemp(suffix=ext, prefix=f"{self.name}_", dir=output_dir)
        os.close(fd)
        result.update(write_map(heatmap, out))
        return out, result


def _first_line(e: BaseException, limit: int = 300) -> str:
    msg = " ".join(str(e).split())
    return msg if len(msg) <= limit else msg[:limit] + "..."


def _root_cause(e: BaseException) -> BaseException:
    """The first :class:`BadInputError` of a chain, else its innermost exception (MONAI's Compose re-raises errors
    as ``RuntimeError('applying transform ...')``)."""
    seen = {id(e)}
    while not isinstance(e, BadInputError) and e.__cause__ is not None and id(e.__cause__) not in seen:
        e = e.__cause__
        seen.add(id(e))
    return e
