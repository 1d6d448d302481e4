"""AUCp at validation (Brainomaly, WACV 2024): choose a checkpoint without anomaly labels.

:class:`PseudoAUCMetric` is an ignite metric on the evaluator's per-sample outputs: the AUROC of the known-healthy
validation samples (``role`` ``normal``) against the unannotated mixed samples (``role`` ``mixed``, labels hidden).
Use it as the evaluator's key metric so that ``CheckpointSaver(save_key_metric=True)`` keeps the checkpoint with the
best AUCp; :class:`MixedSetAUROC` (an additional metric) reports the true AUROC on the mixed set from the hidden
``true_label``, when the data has one, so the report shows how well AUCp tracked it. Neither needs the test split.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.utils import IgniteInfo, min_version, optional_import

from monai_anomaly.metrics.aucp import debiased_auc, pseudo_auc
from monai_anomaly.utils.enums import AnomalyKeys, Role

Metric, _ = optional_import("ignite.metrics", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Metric", as_type="base")

__all__ = ["PseudoAUCMetric", "MixedSetAUROC", "LabelledAUROC"]


def _samples(output: Any) -> list[Mapping[str, Any]]:
    """Per-sample dicts from a decollated list or a batched dict."""
    if isinstance(output, Sequence) and not isinstance(output, (str, bytes)):
        return [o for o in output if isinstance(o, Mapping)]
    if isinstance(output, Mapping):
        scores = np.asarray(output[AnomalyKeys.SCORE].detach().cpu() if hasattr(output[AnomalyKeys.SCORE], "detach")
                            else output[AnomalyKeys.SCORE]).reshape(-1)  # fmt: skip
        n = scores.size
        rows = []
        for i in range(n):
            row = {AnomalyKeys.SCORE.value: float(scores[i])}
            for key in (AnomalyKeys.ROLE, AnomalyKeys.TRUE_LABEL):
                v = output.get(key)
                if v is not None:
                    row[key.value] = v[i]
            rows.append(row)
        return rows
    return []


def _value(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


class PseudoAUCMetric(Metric):
    """AUCp of the known-healthy vs the unannotated validation samples (higher is better).

    Args:
        normal_fraction: the share of normals expected in the unannotated set; when given, ``compute`` returns the
            de-biased AUC estimate ``(AUCp - 0.5 pi) / (1 - pi)`` instead (same ranking of checkpoints).
        output_transform: applied to ``engine.state.output``.

    Example:
        >>> m = PseudoAUCMetric()
        >>> m.update([{"score": 0.1, "role": "normal"}, {"score": 0.9, "role": "mixed"}])
        >>> m.update([{"score": 0.2, "role": "mixed"}])
        >>> m.compute()
        1.0
    """

    def __init__(self, normal_fraction: float | None = None, output_transform: Callable = lambda x: x) -> None:
        self.normal_fraction = normal_fraction
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._normal: list[float] = []
        self._mixed: list[float] = []

    def update(self, output: Any) -> None:
        for s in _samples(output):
            role = str(_value(s.get(AnomalyKeys.ROLE.value, "")))
            score = float(_value(s[AnomalyKeys.SCORE.value]))
            if role == Role.NORMAL.value:
                self._normal.append(score)
            elif role == Role.MIXED.value:
                self._mixed.append(score)

    def compute(self) -> float:
        if not self._normal or not self._mixed:
            raise ValueError(
                f"AUCp needs known-healthy and unannotated validation samples; got {len(self._normal)} and "
                f"{len(self._mixed)} (train with a mixed set: role 'mixed')"
            )
        aucp = pseudo_auc(self._normal, self._mixed)
        return aucp if self.normal_fraction is None else debiased_auc(aucp, self.normal_fraction)


class _SampleAUROC(Metric):
    """AUROC of the ``score`` of the samples whose :meth:`_label` is 0 or 1 (others are ignored); NaN with one class."""

    def _label(self, sample: Mapping[str, Any]) -> int | None:
        raise NotImplementedError

    def reset(self) -> None:
        self._scores: list[float] = []
        self._labels: list[int] = []

    def update(self, output: Any) -> None:
        for s in _samples(output):
            lab = self._label(s)
            if lab in (0, 1):
                self._scores.append(float(_value(s[AnomalyKeys.SCORE.value])))
                self._labels.append(int(lab))

    def compute(self) -> float:
        from sklearn.metrics import roc_auc_score

        if len(set(self._labels)) < 2:
            return float("nan")
        return float(roc_auc_score(self._labels, self._scores))


class MixedSetAUROC(_SampleAUROC):
    """The true AUROC on the unannotated validation samples, from their hidden ``true_label`` (NaN when absent):
    reported beside AUCp, never used to select anything.

    Example:
        >>> m = MixedSetAUROC()
        >>> m.update([{"score": 0.9, "role": "mixed", "true_label": 1}])
        >>> m.update([{"score": 0.2, "role": "mixed", "true_label": 0}])
        >>> m.compute()
        1.0
    """

    def _label(self, sample: Mapping[str, Any]) -> int | None:
        if str(_value(sample.get(AnomalyKeys.ROLE.value, ""))) != Role.MIXED.value:
            return None
        lab = sample.get(AnomalyKeys.TRUE_LABEL.value)
        return None if lab is None else int(_value(lab))


class LabelledAUROC(_SampleAUROC):
    """Slice AUROC on the labelled validation samples (``label`` 0 or 1; unannotated ones, label -1, are ignored);
    NaN with one class. The checkpoint metric of the supervised reference, which may select on labels.

    Example:
        >>> m = LabelledAUROC()
        >>> m.update([{"score": 0.9, "label": 1}, {"score": 0.2, "label": 0}, {"score": 0.95, "label": -1}])
        >>> m.compute()
        1.0
    """

    def _label(self, sample: Mapping[str, Any]) -> int | None:
        return int(_value(sample.get(AnomalyKeys.LABEL.value, -1)))
