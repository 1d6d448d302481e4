"""MONAI Label app serving monai_anomaly bundles.

``monailabel start_server --app monai_anomaly/apps/monailabel --studies <folder> --conf models <bundle>[,<bundle2>]``
serves each bundle as a model: ``POST /infer/<bundle>?image=<id>`` answers with the anomaly heatmap and the scores.
A bundle is a folder path, or a name looked up in ``<app>/model/`` and then in the project's ``bundles/`` folder;
without ``--conf models`` every trained bundle there is served. ``--conf checkpoint <model.pt>`` serves the one bundle
in ``--conf models`` with those weights instead of ``<bundle>/models/model.pt``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.exception import MONAILabelException
from monailabel.interfaces.tasks.infer_v2 import InferTask

import monai_anomaly
from monai_anomaly.apps.monailabel.lib.infer import AnomalyInferTask
from monai_anomaly.apps.monailabel.lib.runner import AnomalyBundleRunner, BundleError
from monai_anomaly.apps.monailabel.lib.studies import convert_dicom_series
from monai_anomaly.utils.errors import BadInputError

__all__ = ["AnomalyApp", "check_infer_requests", "resolve_bundles", "served_models"]

logger = logging.getLogger("monai_anomaly")

PROJECT_BUNDLES = Path(__file__).resolve().parents[3] / "bundles"


def check_infer_requests() -> None:
    """Answer a malformed request to ``POST /infer/<model>`` with HTTP 400 and a message.

    MONAI Label 0.8.5 parses the ``params`` form field and checks for an image in its own endpoint, before the app
    sees the request, and answers both a malformed ``params`` JSON and a request without an image with HTTP 500. The
    endpoint looks ``run_inference`` up by name when called, so a checking wrapper put in its place (once, when this
    app is loaded) sees every request first. Written by hand: MONAI Label has no hook for request validation.
    """
    import json

    import monailabel.endpoints.infer as endpoint

    original = endpoint.run_inference
    if getattr(original, "_monai_anomaly_checked", False):
        return

    def run_inference(  # same parameters, in the same order, as MONAI Label's
        background_tasks, model, image="", session_id="", params="{}", file=None, label=None, output=None
    ):
        if not file and not image and not session_id:
            raise HTTPException(400, "no image given: use ?image=<image id> or upload a file")
        if isinstance(params, str) and params.strip():
            try:
                parsed = json.loads(params)
            except json.JSONDecodeError as e:
                raise HTTPException(400, f"params is not valid JSON: {e.msg} at character {e.pos}") from e
            if not isinstance(parsed, dict):
                raise HTTPException(400, f"params must be a JSON object, got {type(parsed).__name__}")
        return original(background_tasks, model, image, session_id, params, file, label, output)

    run_inference._monai_anomaly_checked = True  # type: ignore[attr-defined]
    endpoint.run_inference = run_inference


def resolve_bundles(models: str | None, app_dir: str | os.PathLike) -> list[Path]:
    """Bundle folders for the ``models`` conf: comma-separated paths or names (``<app>/model/<name>``, then the
    project's ``bundles/<name>``); empty means every bundle there that has ``models/model.pt``.

    Raises:
        BundleError: a name that matches no folder.

    Example:
        >>> resolve_bundles("autoencoder_anomaly", "monai_anomaly/apps/monailabel")  # doctest: +SKIP
        [PosixPath('.../bundles/autoencoder_anomaly')]
    """
    roots = [Path(app_dir) / "model", PROJECT_BUNDLES]
    names = [m.strip() for m in (models or "").split(",") if m.strip() and m.strip().lower() != "all"]
    if not names:
        return sorted(
            {b.resolve() for r in roots if r.is_dir() for b in r.iterdir() if (b / "models" / "model.pt").is_file()}
        )
    found = []
    for name in names:
        candidates = [Path(name).expanduser()] + [r / name for r in roots]
        hit = next((c for c in candidates if (c / "configs").is_dir()), None)
        if hit is None:
            raise BundleError(name, f"not found (looked in {', '.join(str(c) for c in candidates)})")
        found.append(hit.resolve())
    return found


def served_models(conf: dict[str, str], app_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """``(bundle folder, weights file)`` of each bundle to serve: the bundles of the ``models`` conf (see
    :func:`resolve_bundles`), each with ``<bundle>/models/model.pt``, or, with the ``checkpoint`` conf, the one bundle
    named in ``models`` with that file (e.g. ``runs/ae/models/model.pt`` written by ``python -m monai_anomaly train``).

    Raises:
        BundleError: a name that matches no folder.
        ValueError: a ``checkpoint`` that is not a file, or with other than one bundle in ``models``.

    Example:
        >>> conf = {"models": "autoencoder_anomaly", "checkpoint": "runs/ae/models/model.pt"}
        >>> served_models(conf, "monai_anomaly/apps/monailabel")  # doctest: +SKIP
        [(PosixPath('.../bundles/autoencoder_anomaly'), PosixPath('.../runs/ae/models/model.pt'))]
    """
    bundles = resolve_bundles(conf.get("models"), app_dir)
    checkpoint = (conf.get("checkpoint") or "").strip()
    if not checkpoint:
        return [(b, b / "models" / "model.pt") for b in bundles]
    ckpt = Path(checkpoint).expanduser().resolve()
    if not ckpt.is_file():
        raise ValueError(f"--conf checkpoint {checkpoint}: no such file")
    names = [m for m in (conf.get("models") or "").split(",") if m.strip()]
    if len(names) != 1 or len(bundles) != 1:
        raise ValueError(f"--conf checkpoint needs exactly one bundle in --conf models (got {conf.get('models')!r})")
    return [(bundles[0], ckpt)]


class AnomalyApp(MONAILabelApp):
    """The MONAI Label app: one :class:`AnomalyInferTask` per bundle, a local studies folder (DICOM series folders
    are converted to NIfTI once) and bad requests answered with a clear HTTP error.

    Conf keys (``--conf KEY VALUE``): ``models`` (bundles, see :func:`resolve_bundles`), ``checkpoint`` (the weights
    of the one bundle in ``models``, instead of its ``models/model.pt``; see :func:`served_models`), ``device``
    (``cpu``, ``cuda``; default ``cuda`` when available).

    Example:
        >>> conf = {"models": "autoencoder_anomaly"}
        >>> app = AnomalyApp("monai_anomaly/apps/monailabel", "studies/", conf)  # doctest: +SKIP
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        import torch

        conf = conf or {}
        check_infer_requests()
        self.device = conf.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        self.models = served_models(conf, app_dir)
        self.bundles = [b for b, _ in self.models]
        if not self.bundles:
            logger.warning("no trained bundle to serve: pass --conf models <bundle folder>")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="monai_anomaly",
            description="Unsupervised anomaly detection: anomaly heatmaps and scores",
            version=monai_anomaly.__version__,
            labels=["anomaly"],
        )

    def init_datastore(self) -> Datastore:
        if os.path.isdir(self.studies):
            convert_dicom_series(self.studies)
        return super().init_datastore()

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for bundle, ckpt in self.models:
            try:
                runner = AnomalyBundleRunner(bundle, checkpoint=str(ckpt), device=self.device)
                infers[bundle.name] = AnomalyInferTask(runner)
            except BundleError as e:
                logger.error("not serving %s", e)
        logger.info("serving bundles: %s", ", ".join(infers) or "none")
        return infers

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's ``infer`` with bad requests turned into HTTP errors naming the problem (the server goes on).

        404: unknown model or image id; 400: a file that is not a usable image (not an image, wrong dimensionality,
        bad params); 500: a bundle that fails.
        """
        model = request.get("model")
        if model not in self._infers:
            raise HTTPException(404, f"unknown model {model!r}; served models: {sorted(self._infers)}")
        image = request.get("image")
        if isinstance(image, str):
            store = datastore or self.datastore()
            if not image:
                raise HTTPException(400, "no image given: use ?image=<image id> or upload a file")
            if not os.path.exists(image) and not store.get_image_uri(image):
                known = store.list_images()
                raise HTTPException(404, f"unknown image id {image!r} ({len(known)} images in the datastore)")
        try:
            return super().infer(request, datastore)
        except BadInputError as e:
            raise HTTPException(400, f"bad input image {e}") from e
        except (ValueError, TypeError) as e:
            raise HTTPException(400, f"bad request: {e}") from e
        except (BundleError, MONAILabelException) as e:
            raise HTTPException(500, str(getattr(e, "msg", e))) from e
