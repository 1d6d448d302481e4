"""The post-transform of a scored scan: the volume score and the verdict, from the slice scores of the inferer.

:class:`~monai_anomaly.inferers.slice.AnomalySliceInferer` scores each slice at the training size; this transform
aggregates the scored slices into the volume score (:func:`~monai_anomaly.scoring.aggregation.aggregate_scores`, the
function evaluation uses) and applies the :class:`~monai_anomaly.metrics.thresholds.DecisionThresholds`. It works on
one sample (after ``decollate_batch``), so it is a bundle's ``postprocessing`` and the MONAI Label task's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from monai_anomaly.metrics.thresholds import DecisionThresholds
from monai_anomaly.scoring.aggregation import AGGREGATION_METHODS, aggregate_scores
from monai_anomaly.transforms.slicing import skip_reason
from monai_anomaly.utils.enums import AnomalyKeys

__all__ = ["VolumeAnomalyScore", "VolumeAnomalyScoreD", "VolumeAnomalyScoreDict", "VolumeAnomalyScored"]


def _tensor(x: Any) -> torch.Tensor:
    if isinstance(x, MetaTensor):
        return x.as_tensor()
    if isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(np.asarray(x))


class VolumeAnomalyScore(Transform):
    """The volume score and verdict of one scan from its slice scores (``scored``: which slices count).

    Args:
        aggregation: volume aggregation (:data:`~monai_anomaly.scoring.aggregation.AGGREGATION_METHODS`).
        aggregation_kwargs: its ``k`` / ``q``.
        thresholds: the decision thresholds (``None``: scores only); ``"fraction_above"`` needs its slice threshold.
        axis: the slice axis, recorded in the result.

    Example:
        >>> from monai_anomaly.metrics.thresholds import DecisionThresholds, Threshold
        >>> t = DecisionThresholds(Threshold(0.5, "manual", "given"), 0.5, "derived: ...")
        >>> r = VolumeAnomalyScore("max", thresholds=t)(torch.tensor([0.1, 0.9, 0.2]), torch.tensor([1, 1, 0]).bool())
        >>> r["volume_score"], r["prediction"], r["scored_slices"]
        (0.9, 'anomalous', [0, 1])
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        aggregation: str = "mean",
        aggregation_kwargs: Mapping[str, Any] | None = None,
        thresholds: DecisionThresholds | None = None,
        axis: int = 2,
    ) -> None:
        if aggregation not in AGGREGATION_METHODS:
            raise ValueError(f"aggregation must be one of {AGGREGATION_METHODS}, got {aggregation!r}")
        self.aggregation = aggregation
        self.aggregation_kwargs = dict(aggregation_kwargs or {})
        self.thresholds = thresholds if thresholds is not None else DecisionThresholds()
        if aggregation == "fraction_above" and self.aggregation_kwargs.get("threshold") is None:
            if self.thresholds.slice is None:
                raise ValueError("aggregation 'fraction_above' needs a slice threshold")
            self.aggregation_kwargs["threshold"] = float(self.thresholds.slice.value)
        self.axis = axis

    def __call__(
        self, slice_scores: Any, scored: Any = None, foreground_fraction: Any = None, min_foreground: Any = None
    ) -> dict[str, Any]:
        """``{"volume_score", "slice_scores", "scored_slices", "skipped_slices", "threshold", "volume_threshold",
        "prediction", "decided_by", "thresholds", "model_epoch", "aggregation", "axis"}`` as JSON-able values.

        ``skipped_slices`` lists each slice not scored with its foreground share (``foreground_fraction``, from the
        inferer) and the reason (:func:`~monai_anomaly.transforms.slicing.skip_reason` against ``min_foreground``).
        """
        s = _tensor(slice_scores).detach().cpu().double().reshape(-1)
        keep = torch.ones_like(s, dtype=torch.bool) if scored is None else _tensor(scored).cpu().bool().reshape(-1)
        vs = aggregate_scores(s[keep], method=self.aggregation, **self.aggregation_kwargs)
        t = self.thresholds
        frac = None if foreground_fraction is None else _tensor(foreground_fraction).detach().cpu().reshape(-1)
        mf = 0.0 if min_foreground is None else float(_tensor(min_foreground).reshape(-1)[0])
        skipped = []
        for i in torch.nonzero(~keep).flatten().tolist():
            f = None if frac is None else round(float(frac[i]), 6)
            reason = "not selected" if f is None else skip_reason(f, mf)
            skipped.append({"slice_index": int(i), "foreground_fraction": f, "skip_reason": reason})
        return {
            "volume_score": float(vs),
            "slice_scores": [float(v) for v in s.float()],
            "scored_slices": [int(i) for i in torch.nonzero(keep).flatten()],
            "skipped_slices": skipped,
            "threshold": None if t.slice is None else t.slice.to_dict(),
            "volume_threshold": t.volume,
            "prediction": t.decide(vs),
            "decided_by": t.decided_by(),
            "thresholds": t.to_dict(),
            "model_epoch": int(t.epoch),
            "aggregation": self.aggregation,
            "axis": self.axis,
        }


class VolumeAnomalyScored(MapTransform):
    """Dictionary version of :class:`VolumeAnomalyScore` for a bundle's ``postprocessing`` and MONAI Label.

    ``d[key]`` is the inferer's output for one scan (``anomaly_map``, ``slice_scores``, ``scored``). Afterwards
    ``d[key]`` is the anomaly map on the scan's grid (a MetaTensor with the image's meta, for writers), ``d["result"]``
    holds the JSON-able result and ``d["volume_score"]`` the volume score.

    Args:
        keys: the inferer output's key (``"pred"`` in MONAI's evaluators).
        aggregation: volume aggregation.
        aggregation_kwargs: its ``k`` / ``q``.
        thresholds: the :class:`~monai_anomaly.metrics.thresholds.DecisionThresholds`.
        axis: the slice axis (recorded).
        image_key: whose meta the map gets.
        result_key: where the JSON-able result goes.
        allow_missing_keys: skip a missing key.
    """

    backend = VolumeAnomalyScore.backend

    def __init__(
        self,
        keys: KeysCollection = "pred",
        aggregation: str = "mean",
        aggregation_kwargs: Mapping[str, Any] | None = None,
        thresholds: DecisionThresholds | None = None,
        axis: int = 2,
        image_key: str = AnomalyKeys.IMAGE,
        result_key: str = AnomalyKeys.RESULT,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"VolumeAnomalyScored takes one key, got {self.keys}")
        self.scorer = VolumeAnomalyScore(aggregation, aggregation_kwargs, thresholds, axis)
        self.image_key = image_key
        self.result_key = result_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            out = d[key]
            if not isinstance(out, Mapping) or "slice_scores" not in out:
                raise ValueError(
                    f"d[{key!r}] must be the output of AnomalySliceInferer (anomaly_map, slice_scores, scored), got "
                    f"{type(out).__name__}"
                )
            r = self.scorer(
                out["slice_scores"], out.get("scored"), out.get("foreground_fraction"), out.get("min_foreground")
            )
            amap = _tensor(out[AnomalyKeys.ANOMALY_MAP]).detach().float()
            img = d.get(self.image_key)
            d[key] = MetaTensor(amap, meta=dict(img.meta)) if isinstance(img, MetaTensor) else amap
            d[AnomalyKeys.VOLUME_SCORE] = r["volume_score"]
            prev = d.get(self.result_key)
            d[self.result_key] = {**(dict(prev) if isinstance(prev, Mapping) else {}), **r}
        return d


VolumeAnomalyScoreD = VolumeAnomalyScoreDict = VolumeAnomalyScored
