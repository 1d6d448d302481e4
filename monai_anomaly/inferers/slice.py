"""Score 2D images and, slice by slice, 3D volumes exactly as evaluation does, at the size the network was trained on.

Every door that scores a whole scan (``infer``, ``monai.bundle run`` with ``inference.json``, MONAI Label) goes
through :class:`AnomalySliceInferer`: it picks the slices evaluation picks
(:func:`~monai_anomaly.transforms.slicing.select_slices`), resizes each with the transform training and evaluation use
(:class:`~monai_anomaly.transforms.spatial.ResizeToSquare`), calls the anomaly model's ``predict`` and the one slice
scorer (:func:`~monai_anomaly.scoring.slice_scores.score_slices`) at that size, and only then resamples the map back
onto the scan's grid, for display. Scores and thresholds therefore live at the same resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from monai_anomaly.scoring.maps import MAP_NORMALISATIONS, erode_mask, mask_outside, normalise_map
from monai_anomaly.scoring.slice_scores import SCORE_REGIONS, SLICE_SCORE_METHODS, score_slices
from monai_anomaly.transforms.slicing import foreground_fractions, select_slices
from monai_anomaly.transforms.spatial import ResizeToSquare
from monai_anomaly.utils.enums import AnomalyKeys

__all__ = ["SCANNED_KEYS", "AnomalySliceInferer"]

SCANNED_KEYS = ("slice_scores", "scored", "foreground_fraction", "min_foreground")
"""What :class:`AnomalySliceInferer` returns beside ``anomaly_map``: ``(B, S)`` slice scores (0 where not scored),
``(B, S)`` booleans, True where a slice was scored, ``(B, S)`` foreground shares of the slices and ``(B,)`` the
``min_foreground`` they were compared with (so the postprocessing can say why a slice was not scored)."""


def _predictor(network: Any) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """``(x, foreground) -> map`` of an anomaly model (``predict``) or of a plain map network (``forward``)."""
    model = getattr(network, "module", network)  # DDP
    predict = getattr(model, "predict", None)
    if callable(predict):
        return lambda x, fg: predict(x, foreground=fg)[AnomalyKeys.ANOMALY_MAP]

    def forward(x: torch.Tensor, fg: torch.Tensor | None) -> torch.Tensor:
        out = network(x)
        out = out[AnomalyKeys.ANOMALY_MAP] if isinstance(out, Mapping) else out
        return out if fg is None else mask_outside(out, fg)

    return forward


class AnomalySliceInferer(Inferer):
    """Score each slice of a batch of 2D images ``(B, C, H, W)`` or volumes ``(B, C, H, W, D)`` at the training size.

    Returns a dictionary: ``anomaly_map`` ``(B, 1, *spatial)`` on the input's grid (each scored slice's map resized
    back, 0 elsewhere: for display and NIfTI maps), ``slice_scores`` ``(B, S)`` and ``scored`` ``(B, S)`` (``S`` = 1
    for a 2D image). A volume's slices with less foreground than ``min_foreground`` are not scored (training and
    evaluation never see them); when none has enough, every slice is scored. A 2D image is always scored.

    Args:
        spatial_size: the side the network was trained on (``image_size``).
        spatial_dim: the axis of ``(H, W, D)`` to slice along (2 = axial for RAS volumes).
        sw_batch_size: slices per network call.
        min_foreground: the slice selection of training and evaluation.
        score_method: slice score (:data:`~monai_anomaly.scoring.slice_scores.SLICE_SCORE_METHODS`).
        score_region: ``"foreground"`` or ``"image"``.
        score_kwargs: ``k`` / ``q`` of the slice score.
        foreground_erosion: erode each slice's foreground mask by this many pixels (at the training size) before the
            map is masked and scored, as evaluation does.
        map_normalisation: ``"none"`` or ``"complexity"``: each slice's map divided by its input's detail energy over
            the uneroded foreground (:func:`~monai_anomaly.scoring.maps.normalise_map`), as evaluation does; applied to
            the map of an anomaly model and of an exported one alike.

    Example:
        >>> import torch
        >>> inferer = AnomalySliceInferer(32, spatial_dim=2, sw_batch_size=8, score_method="max")
        >>> out = inferer(torch.rand(1, 1, 40, 48, 5), lambda x: x * 0 + 1)
        >>> tuple(out["anomaly_map"].shape), out["slice_scores"].tolist()
        ((1, 1, 40, 48, 5), [[1.0, 1.0, 1.0, 1.0, 1.0]])
    """

    def __init__(
        self,
        spatial_size: int | tuple[int, ...],
        spatial_dim: int = 2,
        sw_batch_size: int = 16,
        min_foreground: float = 0.0,
        score_method: str = "mean",
        score_region: str = "foreground",
        score_kwargs: Mapping[str, Any] | None = None,
        foreground_erosion: int = 0,
        map_normalisation: str = "none",
    ) -> None:
        super().__init__()
        self.foreground_erosion = int(foreground_erosion)
        if map_normalisation not in MAP_NORMALISATIONS:
            raise ValueError(f"map_normalisation must be one of {MAP_NORMALISATIONS}, got {map_normalisation!r}")
        self.map_normalisation = map_normalisation
        if spatial_dim not in (0, 1, 2):
            raise ValueError(f"spatial_dim must be 0, 1 or 2 (an axis of H, W, D), got {spatial_dim}.")
        if score_method not in SLICE_SCORE_METHODS:
            raise ValueError(f"score_method must be one of {SLICE_SCORE_METHODS}, got {score_method!r}")
        if score_region not in SCORE_REGIONS:
            raise ValueError(f"score_region must be one of {SCORE_REGIONS}, got {score_region!r}")
        if not 0.0 <= float(min_foreground) < 1.0:
            raise ValueError(f"min_foreground must be in [0, 1), got {min_foreground}")
        size = spatial_size if isinstance(spatial_size, int) else int(tuple(spatial_size)[0])
        self.spatial_size = (int(size), int(size))
        self.spatial_dim = spatial_dim
        self.sw_batch_size = max(1, int(sw_batch_size))
        self.min_foreground = float(min_foreground)
        self.score_method = score_method
        self.score_region = score_region
        self.score_kwargs = dict(score_kwargs or {})
        # the slicing transforms of train.json / evaluate.json (ResizeToSquared: bilinear + anti-aliasing for the
        # image, nearest for the foreground)
        self.resize_image = ResizeToSquare(size, interp_mode="bilinear", anti_aliasing=True)
        self.resize_mask = ResizeToSquare(size, interp_mode="nearest", anti_aliasing=False)

    def slices(
        self, volume: torch.Tensor, foreground: torch.Tensor | None, fractions: torch.Tensor | None = None
    ) -> list[int]:
        """The indices of the slices of a ``(C, H, W, D)`` volume that are scored."""
        kept = select_slices(volume, self.spatial_dim, self.min_foreground, None, foreground, fractions=fractions)
        return kept or list(range(volume.shape[self.spatial_dim + 1]))

    def __call__(  # type: ignore[override]
        self, inputs: torch.Tensor, network: Callable[..., Any], foreground: torch.Tensor | None = None, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        if inputs.ndim not in (4, 5):
            raise ValueError(
                f"AnomalySliceInferer takes (B, C, H, W) images or (B, C, H, W, D) volumes, got shape "
                f"{tuple(inputs.shape)}."
            )
        predict = _predictor(network)
        inputs = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs  # values only: slices are resized
        fg_all = None if foreground is None else torch.as_tensor(foreground)
        fg_all = fg_all.as_tensor() if isinstance(fg_all, MetaTensor) else fg_all
        maps, scores, scored, fractions = [], [], [], []
        for b in range(inputs.shape[0]):
            vol = inputs[b]
            fg = None if fg_all is None else fg_all[b].to(vol.device)
            if vol.ndim == 3:  # a 2D image: one slice, always scored
                take = [0]
                cut = [(vol, fg)]
                n_slices = 1
                frac = foreground_fractions(vol[..., None], 2, None if fg is None else fg[..., None])
            else:
                frac = foreground_fractions(vol, self.spatial_dim, fg)
                take = self.slices(vol, fg, frac)
                dim = self.spatial_dim + 1
                cut = [(vol.select(dim, i), None if fg is None else fg.select(dim, i)) for i in take]
                n_slices = vol.shape[dim]
            spatial = tuple(cut[0][0].shape[1:])
            xs = [self.resize_image(s) for s, _ in cut]
            fgs = None if fg is None else [self.resize_mask(f) for _, f in cut]
            amaps, sc = [], []
            for start in range(0, len(xs), self.sw_batch_size):
                x = torch.stack([torch.as_tensor(t) for t in xs[start : start + self.sw_batch_size]]).float()
                whole = None if fgs is None else torch.stack([torch.as_tensor(t) for t in fgs[start : start + len(x)]])
                whole = None if whole is None else whole.to(x.device)
                f = None if whole is None else erode_mask(whole, self.foreground_erosion)
                m = normalise_map(predict(x, f).float(), x, whole, self.map_normalisation)
                sc.append(score_slices(m, f, self.score_method, self.score_region, **self.score_kwargs).cpu())
                amaps.extend(self.resize_image.restore(mi, spatial) for mi in m)
            slice_scores = torch.zeros(n_slices, dtype=torch.float32)
            slice_scores[take] = torch.cat(sc)
            is_scored = torch.zeros(n_slices, dtype=torch.bool)
            is_scored[take] = True
            out = torch.zeros((1, *vol.shape[1:]), dtype=torch.float32, device=amaps[0].device)
            if vol.ndim == 3:
                out[:] = amaps[0][:1]
            else:
                for i, mi in zip(take, amaps):
                    out.select(self.spatial_dim + 1, i).copy_(mi[:1])
            if fg is not None:
                out = mask_outside(out, fg)
            maps.append(out)
            scores.append(slice_scores)
            scored.append(is_scored)
            fractions.append(frac.float().cpu())
        return {
            AnomalyKeys.ANOMALY_MAP: torch.stack(maps),
            "slice_scores": torch.stack(scores),
            "scored": torch.stack(scored),
            "foreground_fraction": torch.stack(fractions),
            "min_foreground": torch.full((inputs.shape[0],), self.min_foreground, dtype=torch.float32),
        }
