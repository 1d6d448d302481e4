"""The MONAI Label infer task serving one anomaly bundle: heatmap file + scores JSON."""

from __future__ import annotations

import logging
import os
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from monai_anomaly.apps.monailabel.lib.runner import AnomalyBundleRunner

__all__ = ["AnomalyInferTask"]

logger = logging.getLogger("monai_anomaly")


def _float_or_none(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


class AnomalyInferTask(InferTask):
    """MONAI Label task answering ``POST /infer/<bundle>?image=<id>`` with the anomaly heatmap and the scores.

    An anomaly map is not a segmentation, so this task does not go through MONAI Label's ``BundleInferTask`` (which
    appends a label-restoring step and, in 0.8.5, imports torchvision): it runs the bundle with
    :class:`~monai_anomaly.apps.monailabel.lib.runner.AnomalyBundleRunner` and returns the heatmap file (float32
    NIfTI on the input's voxel grid and affine; ``result_extension=".png"`` gives an 8-bit PNG for 2D images) and the
    JSON params ``volume_score``, ``slice_scores``, ``threshold``, ``prediction`` (``"normal"``/``"anomalous"``),
    ``bundle``, ``bundle_version``, ``map_shape``, ``map_max``.

    Request params (all optional): ``threshold`` (overrides the bundle's volume threshold for the prediction),
    ``result_extension`` (``.nii.gz``, ``.nii`` or ``.png``).

    Args:
        runner: the bundle runner.
        dimension: the input dimension advertised to viewers (3: volumes; 2D images work too).

    Example:
        >>> task = AnomalyInferTask(AnomalyBundleRunner("bundles/autoencoder_anomaly"))  # doctest: +SKIP
        >>> label_file, params = task({"image": "studies/case1.nii.gz"})  # doctest: +SKIP
    """

    def __init__(self, runner: AnomalyBundleRunner, dimension: int = 3) -> None:
        super().__init__(
            type=InferType.OTHERS,
            labels=["anomaly"],
            dimension=dimension,
            description=f"Anomaly heatmap and scores ({runner.description})",
            config={"threshold": "", "result_extension": ".nii.gz"},
        )
        self.runner = runner

    def is_valid(self) -> bool:
        return self.runner.config_path.is_file() and self.runner.checkpoint_path.is_file()

    def info(self) -> dict[str, Any]:
        i = super().info()
        i["version"] = self.runner.version
        i["bundle"] = str(self.runner.bundle_dir)
        i["output"] = "anomaly heatmap (float32, input geometry) + volume_score, slice_scores, threshold, prediction"
        return i

    def get_path(self, validate: bool = True) -> str | None:
        path = str(self.runner.checkpoint_path)
        return path if not validate or os.path.exists(path) else None

    def __call__(self, request: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        req = {**self._config, **request}
        image = req.get("image")
        if not isinstance(image, str):
            from monai_anomaly.utils.errors import BadInputError

            raise BadInputError(str(image), "the image must be a file path or a datastore image id")
        label_file, result = self.runner.infer_to_file(
            image,
            threshold=_float_or_none(req.get("threshold")),
            extension=req.get("result_extension") or None,
        )
        logger.info("%s on %s: %.6g (%s)", self.runner.name, image, result["volume_score"], result["prediction"])
        return label_file, result
