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
from monai_anomaly.scoring.aggregation import aggregate_scores
from monai_anomaly.utils.enums import AnomalyKeys, Role

Metric, _ = optional_import("ignite.metrics", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Metric", as_type="base")

__all__ = ["AUCP_LEVELS", "PseudoAUCMetric", "MixedSetAUROC", "LabelledAUROC"]


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
            for key in (AnomalyKeys.ROLE, AnomalyKeys.TRUE_LABEL, AnomalyKeys.VOLUME_ID):
                v = output.get(key)
                if v is not None:
                    row[key.value] = v[i]
            rows.append(row)
        return rows
    return []


def _value(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


AUCP_LEVELS = ("slice", "subject")


class PseudoAUCMetric(Metric):
    """AUCp of the known-healthy vs the unannotated validation samples (higher is better).

    ``level="subject"`` scores subjects, as Brainomaly's protocol does: the slice scores of each subject (its
    ``volume_id``: a volume, or the ``<subject>__NNN`` files of a 2D layout) are aggregated into one score
    (:func:`~monai_anomaly.scoring.aggregation.aggregate_scores`, the bundle's ``aggregation``), and AUCp compares the
    known-healthy subjects with the unannotated ones. Where every subject has one slice the two levels agree.

    Args:
        normal_fraction: the share of normals expected in the unannotated set; when given, ``compute`` returns the
            de-biased AUC estimate ``(AUCp - 0.5 pi) / (1 - pi)`` instead (same ranking of checkpoints).
        output_transform: applied to ``engine.state.output``.
        level: ``"slice"`` or ``"subject"``.
        aggregation, aggregation_k: how a subject's slice scores become one (``level="subject"``).

    Example:
        >>> m = PseudoAUCMetric()
        >>> m.update([{"score": 0.1, "role": "normal"}, {"score": 0.9, "role": "mixed"}])
        >>> m.update([{"score": 0.2, "role": "mixed"}])
        >>> m.compute()
        1.0
        >>> m = PseudoAUCMetric(level="subject", aggregation="mean")
        >>> m.update([{"score": s, "role": r, "volume_id": v} for s, r, v in
        ...           [(0.1, "normal", "a"), (0.3, "normal", "a"), (0.25, "mixed", "b"), (0.05, "mixed", "b")]])
        >>> m.compute()  # subject a: 0.2, subject b: 0.15
        0.0
    """

    def __init__(
        self,
        normal_fraction: float | None = None,
        output_transform: Callable = lambda x: x,
        level: str = "slice",
        aggregation: str = "mean",
        aggregation_k: float = 0.1,
    ) -> None:
        if level not in AUCP_LEVELS:
            raise ValueError(f"level must be one of {AUCP_LEVELS}, got {level!r}")
        self.normal_fraction = normal_fraction
        self.level, self.aggregation, self.aggregation_k = level, str(aggregation), float(aggregation_k)
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._normal: list[tuple[str, float]] = []
        self._mixed: list[tuple[str, float]] = []

    def update(self, output: Any) -> None:
        for s in _samples(output):
            role = str(_value(s.get(AnomalyKeys.ROLE.value, "")))
            score = float(_value(s[AnomalyKeys.SCORE.value]))
            subject = str(_value(s.get(AnomalyKeys.VOLUME_ID.value, "")))
            if role == Role.NORMAL.value:
                self._normal.append((subject, score))
            elif role == Role.MIXED.value:
                self._mixed.append((subject, score))

    def _level_scores(self, pairs: list[tuple[str, float]]) -> list[float]:
        if self.level == "slice":
            return [s for _, s in pairs]
        by: dict[str, list[float]] = {}
        for i, (subject, score) in enumerate(pairs):
            by.setdefault(subject or f"#{i}", []).append(score)  # a sample without a subject is its own
        return [aggregate_scores(v, self.aggregation, k=self.aggregation_k) for v in by.values()]

    def compute(self) -> float:
        if not self._normal or not self._mixed:
            raise ValueError(
                f"AUCp needs known-healthy and unannotated validation samples; got {len(self._normal)} and "
                f"{len(self._mixed)} (train with a mixed set: role 'mixed')"
            )
        aucp = pseudo_auc(self._level_scores(self._normal), self._level_scores(self._mixed))
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
