"""Translate 2D images and, slice by slice, 3D volumes with an image-to-image generator, at the training size.

A two-domain CycleGAN has two generators: ``to_normal`` (abnormal -> healthy, whose output the anomaly map compares
with the input) and ``to_abnormal`` (healthy -> abnormal). :class:`SliceTranslator` runs either on a whole scan the
way :class:`~monai_anomaly.inferers.slice.AnomalySliceInferer` scores it: each slice resized with the transform of
training (:class:`~monai_anomaly.transforms.spatial.ResizeToSquare`), translated, and put back onto the slice's grid.
Every slice is translated (a translation of an empty slice is harmless, and a viewer wants the whole scan).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from monai_anomaly.networks.factory import build_model
from monai_anomaly.transforms.spatial import ResizeToSquare, restore_geometry
from monai_anomaly.utils.checkpoints import load_checkpoint
from monai_anomaly.utils.cli_errors import UsageError
from monai_anomaly.utils.text import safe_file_stem

__all__ = ["SliceTranslator", "load_generators", "write_translations"]

logger = logging.getLogger("monai_anomaly")


class SliceTranslator:
    """Apply a generator to every slice of a ``(C, H, W)`` image or ``(C, H, W, D)`` volume at ``spatial_size``.

    Args:
        spatial_size: the side the generator was trained on (``image_size``).
        spatial_dim: the axis of ``(H, W, D)`` to slice along (2 = axial for RAS volumes).
        sw_batch_size: slices per generator call.

    Example:
        >>> import torch
        >>> t = SliceTranslator(16, sw_batch_size=4)
        >>> out = t(torch.rand(1, 20, 24, 3), lambda x: x * 0 - 1)
        >>> tuple(out.shape), float(out.max())
        ((1, 20, 24, 3), -1.0)
    """

    def __init__(self, spatial_size: int, spatial_dim: int = 2, sw_batch_size: int = 16) -> None:
        if spatial_dim not in (0, 1, 2):
            raise ValueError(f"spatial_dim must be 0, 1 or 2 (an axis of H, W, D), got {spatial_dim}.")
        self.spatial_dim = int(spatial_dim)
        self.sw_batch_size = max(1, int(sw_batch_size))
        self.resize = ResizeToSquare(int(spatial_size), interp_mode="bilinear", anti_aliasing=True)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, generator: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The translated image, on ``image``'s grid (a plain tensor; the caller keeps the geometry)."""
        vol = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
        if vol.ndim not in (3, 4):
            raise ValueError(f"SliceTranslator takes (C, H, W) images or (C, H, W, D) volumes, got {tuple(vol.shape)}")
        dim = self.spatial_dim + 1
        cut = [vol] if vol.ndim == 3 else [vol.select(dim, i) for i in range(vol.shape[dim])]
        spatial = tuple(cut[0].shape[1:])
        xs = [torch.as_tensor(self.resize(s)).float() for s in cut]
        outs: list[torch.Tensor] = []
        for start in range(0, len(xs), self.sw_batch_size):
            y = generator(torch.stack(xs[start : start + self.sw_batch_size]))
            outs.extend(self.resize.restore(yi.float().cpu(), spatial)[:1] for yi in y)
        if vol.ndim == 3:
            return outs[0]
        return torch.stack(outs, dim=dim)


def load_generators(ckpt: str | os.PathLike) -> dict[str, torch.nn.Module | None]:
    """The generators of a CycleGAN ``model.pt``, in eval mode: ``{"to_normal": net, "to_abnormal": net or None}``
    (``None`` where the checkpoint holds none: an identity-mode model, or one saved before bundle 0.5.0).

    Read with ``weights_only=True`` (:func:`~monai_anomaly.utils.checkpoints.load_checkpoint`).

    Raises:
        UsageError: the model is not a CycleGAN (other methods have no generator to translate with).
        BadInputError: an unreadable checkpoint.
    """
    state = load_checkpoint(ckpt)
    settings = dict(state.get("settings") or {}) if isinstance(state, Mapping) else {}
    if settings.get("model_type") != "cyclegan":
        raise UsageError(
            f"{ckpt}: --translate needs a CycleGAN model (bundle cyclegan_anomaly); this one is "
            f"{settings.get('model_type', 'unknown')!r}, which has no generator to translate with"
        )
    nets: dict[str, torch.nn.Module | None] = {}
    for name, key in (("to_normal", "model"), ("to_abnormal", "to_abnormal")):
        sd = state.get(key)
        if not sd:  # absent, or saved empty (an identity-mode model has no abnormal domain)
            nets[name] = None
            continue
        if name == "to_normal":  # the anomaly model wraps the generator: its weights are under "model."
            sd = {k[len("model.") :]: v for k, v in sd.items() if k.startswith("model.")}
        net = build_model(settings)
        net.load_state_dict(sd)
        nets[name] = net.eval()
    return nets


def write_translations(
    data: Iterable[Mapping[str, Any]],
    generators: Mapping[str, torch.nn.Module | None],
    output_dir: str | os.PathLike,
    image_size: int,
    intensity_range: Sequence[float] = (-1.0, 1.0),
    slice_axis: int = 2,
    device: str | torch.device = "cpu",
) -> list[dict[str, str]]:
    """Write every preprocessed scan of ``data`` translated by each generator into ``output_dir``.

    A 2D image becomes ``<scan>_<generator>.png`` at the input's size (the intensity range mapped back onto 0-255);
    a volume becomes ``<scan>_<generator>.nii.gz`` on the scan's own grid (slice by slice at ``image_size``,
    intensities in the model's range). ``translations.csv`` lists them.

    Args:
        data: preprocessed items (``image`` a MetaTensor with the loader's meta, ``volume_id``), e.g. the inference
            config's ``dataset``.
        generators: ``{name: network or None}`` (:func:`load_generators`); ``None`` is left out.
        output_dir: the folder to write (created).
        image_size: the side the generators were trained on.
        intensity_range: the range the images were scaled to.
        slice_axis: the axis of ``(H, W, D)`` to slice volumes along.
        device: where the generators run.

    Returns:
        the rows of ``translations.csv``.
    """
    import nibabel as nib
    from PIL import Image

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    lo, hi = (float(v) for v in intensity_range)
    translator = SliceTranslator(int(image_size), spatial_dim=int(slice_axis))
    nets = {k: v.to(device) for k, v in generators.items() if v is not None}
    rows: list[dict[str, str]] = []
    for d in data:
        image = d["image"]
        source = str(image.meta.get("filename_or_obj", "")) if isinstance(image, MetaTensor) else ""
        vid = str(d.get("volume_id") or Path(source).name or f"scan{len(rows)}")
        for name, net in nets.items():

            def gen(x: torch.Tensor, net: torch.nn.Module = net) -> torch.Tensor:
                return net(x.to(device))

            y = translator(image, gen)
            if y.ndim == 3:  # a 2D image: grey levels on the input's grid
                y = restore_geometry(y, image) if isinstance(image, MetaTensor) else y
                grey = ((np.asarray(y[0], dtype=np.float64) - lo) / (hi - lo)).clip(0.0, 1.0)
                path = out / f"{safe_file_stem(vid)}_{name}.png"
                Image.fromarray((grey.T * 255).round().astype(np.uint8)).save(path)
            else:  # a volume: NIfTI on the scan's own grid
                if isinstance(image, MetaTensor):
                    y = restore_geometry(MetaTensor(y, affine=image.affine, meta=dict(image.meta)), image)
                    affine = np.asarray(y.affine, dtype=np.float64)
                else:
                    affine = np.eye(4)
                path = out / f"{safe_file_stem(vid)}_{name}.nii.gz"
                arr = np.asarray(y[0], dtype=np.float32)
                nib.save(nib.Nifti1Image(arr, affine), str(path))
            rows.append({"volume_id": vid, "source": source, "direction": name, "file": path.name})
    with open(out / "translations.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["volume_id", "source", "direction", "file"])
        w.writeheader()
        w.writerows(rows)
    n = len({r["volume_id"] for r in rows})
    only = "" if "to_abnormal" in nets else " (the model has no to_abnormal generator: to_normal only)"
    logger.info("translations of %d scan(s) written to %s%s", n, out, only)
    return rows
