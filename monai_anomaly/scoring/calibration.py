"""Calibrate raw anomaly scores to their percentile among validation normals."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["NormalCalibrator"]


class NormalCalibrator:
    """Maps a raw score to the share of fitted normal scores at or below it (empirical CDF), in ``[0, 1]``.

    Between fitted normal scores the CDF is interpolated linearly; below the smallest normal it is 0, at or above the
    largest 1. A calibrated score of 0.97 reads "higher than 97 % of the validation normals", which makes scores of
    different methods and runs comparable. The calibrator is fitted on normal scores of a validation split only and
    records that split and the number of samples; its :meth:`state_dict` holds only tensors, ints and strings, so it
    can be stored in a checkpoint and read back with ``torch.load(..., weights_only=True)``.

    Args:
        split: the split the normal scores come from (``"test"`` is refused).

    Example:
        >>> cal = NormalCalibrator().fit([1.0, 2.0, 3.0, 4.0])
        >>> cal([0.5, 2.0, 2.5, 9.0]).tolist()
        [0.0, 0.5, 0.625, 1.0]
    """

    def __init__(self, split: str = "val") -> None:
        self._check_split(split)
        self.split = split
        self.normal_scores: torch.Tensor | None = None

    @staticmethod
    def _check_split(split: str) -> None:
        if str(split).lower() == "test":
            raise ValueError("calibration is never fitted on the test set: fit on validation normals (split='val')")

    @property
    def n_samples(self) -> int:
        """Number of fitted normal scores (0 before :meth:`fit`)."""
        return 0 if self.normal_scores is None else int(self.normal_scores.numel())

    @property
    def fitted(self) -> bool:
        return self.normal_scores is not None

    def fit(self, normal_scores: Any, split: str | None = None) -> NormalCalibrator:
        """Store the sorted normal scores.

        Args:
            normal_scores: scores of normal validation samples (list, array or tensor).
            split: overrides the split given at construction.

        Returns:
            self.

        Raises:
            ValueError: no scores, NaN/Inf scores, or ``split="test"``.
        """
        if split is not None:
            self._check_split(split)
            self.split = split
        s = normal_scores.detach().cpu() if isinstance(normal_scores, torch.Tensor) else normal_scores
        s = torch.as_tensor(np.asarray(s, dtype=np.float64)).reshape(-1)
        if s.numel() == 0:
            raise ValueError("cannot calibrate on zero normal scores")
        bad = (~torch.isfinite(s)).nonzero().flatten()
        if bad.numel():
            raise ValueError(f"normal scores contain {bad.numel()} NaN/Inf value(s) at indices {bad[:10].tolist()}")
        self.normal_scores = torch.sort(s).values
        return self

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        if self.normal_scores is None:
            raise RuntimeError("NormalCalibrator is not fitted: call fit(normal_scores) or load_state_dict first")
        ref = self.normal_scores.numpy()
        uniq, last = np.unique(ref[::-1], return_index=True)  # last occurrence of each value in ascending order
        cum = (ref.size - last) / ref.size  # share of normals <= each unique value
        return np.interp(x, uniq, cum, left=0.0, right=1.0)

    def __call__(self, scores: Any) -> Any:
        """Percentile of ``scores`` among the fitted normals, in ``[0, 1]``.

        Returns the same kind as the input: a float for a python number, a tensor (same shape, device) for a tensor,
        a numpy array otherwise. NaN scores stay NaN.
        """
        if isinstance(scores, torch.Tensor):
            x = scores.detach().cpu().numpy().astype(np.float64)
            out = self._cdf(x)
            out = np.where(np.isnan(x), np.nan, out)
            return torch.as_tensor(out, dtype=torch.float32, device=scores.device).reshape(scores.shape)
        if isinstance(scores, (int, float, np.floating, np.integer)):
            v = float(scores)
            return float("nan") if np.isnan(v) else float(self._cdf(np.asarray([v]))[0])
        x = np.asarray(scores, dtype=np.float64)
        return np.where(np.isnan(x), np.nan, self._cdf(x))

    def state_dict(self) -> dict[str, Any]:
        """``{"normal_scores": tensor, "split": str, "n_samples": int}`` (safe for ``weights_only=True`` loading)."""
        if self.normal_scores is None:
            raise RuntimeError("NormalCalibrator is not fitted: nothing to save")
        return {"normal_scores": self.normal_scores.clone(), "split": str(self.split), "n_samples": self.n_samples}

    def load_state_dict(self, d: dict[str, Any]) -> NormalCalibrator:
        """Restore from :meth:`state_dict` output.

        Raises:
            ValueError: missing keys, or ``n_samples`` that disagrees with the stored scores.
        """
        missing = {"normal_scores", "split"} - set(d)
        if missing:
            raise ValueError(f"calibrator state misses key(s) {sorted(missing)}")
        s = torch.as_tensor(d["normal_scores"], dtype=torch.float64).reshape(-1)
        if "n_samples" in d and int(d["n_samples"]) != s.numel():
            raise ValueError(f"calibrator state says n_samples={int(d['n_samples'])} but holds {s.numel()} scores")
        self._check_split(str(d["split"]))
        self.split = str(d["split"])
        self.fit(s)
        return self

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(split={self.split!r}, n_samples={self.n_samples})"
