"""Settings stored with a model: what inference needs to preprocess and score exactly as training did."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from monai_anomaly.utils.checkpoints import load_checkpoint
from monai_anomaly.utils.errors import BadInputError

__all__ = ["SETTING_SCHEMA", "ModelSettings", "load_model_settings", "validate_settings"]

_PLAIN = (str, int, float, bool, type(None))


def _plain(v: Any) -> Any:
    if isinstance(v, _PLAIN):
        return v
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item"):
        return v.item()
    return str(v)


class ModelSettings:
    """A dict of plain settings (intensity mode, image size, map / score / aggregation...) saved in ``model.pt``.

    Put it in the checkpoint's ``save_dict`` (``"settings": ModelSettings(...)``); :meth:`state_dict` holds only
    strings, numbers, booleans, lists and dicts, so it loads with ``torch.load(..., weights_only=True)``.
    :func:`load_model_settings` reads it back at inference.

    Example:
        >>> s = ModelSettings(intensity_mode="fixed", image_size=64)
        >>> ModelSettings().load_state_dict(s.state_dict()).get("intensity_mode")
        'fixed'
    """

    def __init__(self, **settings: Any) -> None:
        self.settings: dict[str, Any] = {str(k): _plain(v) for k, v in settings.items()}

    def get(self, key: str, default: Any = None) -> Any:
        """One setting."""
        return self.settings.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def update(self, **settings: Any) -> None:
        """Add or change settings."""
        self.settings.update({str(k): _plain(v) for k, v in settings.items()})

    def state_dict(self) -> dict[str, Any]:
        """The settings as a plain dict."""
        return dict(self.settings)

    def load_state_dict(self, state: Mapping[str, Any]) -> ModelSettings:
        """Replace the settings with ``state``; returns ``self``."""
        self.settings = {str(k): _plain(v) for k, v in state.items()}
        return self

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.settings})"


# The declared type of every saved setting and, for words, the values it may take (a name in the registry of the
# module that uses it). A value read from a checkpoint is data: it is checked against this and never evaluated.
_WORD = r"[A-Za-z][A-Za-z0-9_\-]*"
_ALLOWED: dict[str, tuple[str, str] | tuple[str, ...]] = {
    # setting: (module, name of its registry) or the allowed words themselves
    "intensity_mode": ("monai_anomaly.transforms.intensity", "INTENSITY_MODES"),
    "map_method": ("monai_anomaly.scoring.maps", "MAP_METHODS"),
    "score_method": ("monai_anomaly.scoring.slice_scores", "SLICE_SCORE_METHODS"),
    "aggregation": ("monai_anomaly.scoring.aggregation", "AGGREGATION_METHODS"),
    "latent": ("monai_anomaly.networks.autoencoder", "LATENT_TYPES"),
    "up_mode": ("monai_anomaly.networks.dense_ae", "UP_MODES"),
    "model_type": (
        "dense",
        "spatial",
        "vae",
        "unet",
        "healthy_gan",
        "cyclegan",
        "anoddpm",
        "gan_refined",
        "resnet18",
    ),  # fmt: skip
    "score_region": ("foreground", "image"),
    "schedule": ("linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine"),
    "noise": ("gaussian", "simplex"),
    "cyclegan_mode": ("identity", "two_domain"),
}
SETTING_SCHEMA: dict[str, str] = {
    "intensity_mode": "word",
    "image_size": "int",
    "intensity_range": "numbers",
    "model_type": "word",
    "latent": "word",
    "latent_size": "int",
    "hidden_size": "int",
    "up_mode": "word",
    "channels": "ints",
    "strides": "ints",
    "num_res_units": "int",
    "gan_mask": "bool",
    "res_blocks": "int",
    "diffusion": "dict",
    "map_method": "word",
    "score_method": "word",
    "aggregation": "word",
    "aggregation_k": "number",
    "min_foreground": "number",
    "slice_axis": "int",
    "foreground_only": "bool",
    "score_region": "word",
    # inside ``diffusion`` (and its ``coarse`` stage-1 settings, checked with this same table)
    "timesteps": "int",
    "schedule": "word",
    "t0": "int",
    "steps": "int",
    "seed": "int",
    "condition": "bool",
    "noise": "word",
    "coarse": "dict",
}


def _allowed(key: str) -> tuple[str, ...] | None:
    spec = _ALLOWED.get(key)
    if spec is None:
        return None
    if len(spec) == 2 and spec[0].startswith("monai_anomaly."):
        import importlib

        return tuple(getattr(importlib.import_module(spec[0]), spec[1]))
    return tuple(spec)


def _check_value(key: str, value: Any, where: str) -> Any:
    import math
    import re

    kind = SETTING_SCHEMA.get(key)

    def bad(what: str) -> ValueError:
        return ValueError(f"setting {where} = {value!r} {what}")

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if kind is None:  # a setting of a later version: plain data only, never an expression or a config object
        return _plain_data(value, where)
    if kind == "word":
        if not isinstance(value, str) or not re.fullmatch(_WORD, value):
            raise bad("is not a plain name")
        allowed = _allowed(key)
        if allowed is not None and value not in allowed:
            raise bad(f"is not one of {list(allowed)}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("is not a whole number")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("is not true or false")
        return value
    if kind == "number":
        if not number(value):
            raise bad("is not a finite number")
        return value
    if kind in ("ints", "numbers"):
        ok = int if kind == "ints" else None
        if not isinstance(value, (list, tuple)) or not value:
            raise bad("is not a list of numbers")
        for v in value:
            if (ok is int and (isinstance(v, bool) or not isinstance(v, int))) or not number(v):
                raise bad("is not a list of " + ("whole numbers" if ok is int else "finite numbers"))
        return list(value)
    if kind == "dict":
        if not isinstance(value, Mapping):
            raise bad("is not a dict")
        return {str(k): _check_value(str(k), v, f"{where}.{k}") for k, v in _check_keys(value, where).items()}
    raise AssertionError(kind)


def _check_keys(d: Mapping, where: str) -> Mapping:
    import re

    for k in d:
        if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", k):
            raise ValueError(f"setting {where} has a key {k!r} that is not a plain name")
    return d


def _plain_data(value: Any, where: str) -> Any:
    if isinstance(value, str):
        if value.lstrip()[:1] in ("$", "@", "%"):
            raise ValueError(f"setting {where} = {value!r} looks like a config expression or reference")
        return value
    if isinstance(value, Mapping):
        return {k: _plain_data(v, f"{where}.{k}") for k, v in _check_keys(value, where).items()}
    if isinstance(value, (list, tuple)):
        return [_plain_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    raise ValueError(f"setting {where} holds a {type(value).__name__}, not plain data")


def validate_settings(settings: Mapping[str, Any], source: str | os.PathLike = "settings") -> dict[str, Any]:
    """Check every setting against its declared type and allowed values (:data:`SETTING_SCHEMA`).

    Settings come from files (a ``model.pt``) and reach MONAI's config parser, which runs strings starting with
    ``$`` and builds dicts with ``_target_``: so a word must be a plain name from its registry, a number a number,
    a dict's keys plain names, and a setting this version does not know plain data with no expression in it.

    Raises:
        BadInputError: naming ``source`` and the setting, when one does not pass.

    Example:
        >>> validate_settings({"map_method": "squared", "image_size": 64})
        {'map_method': 'squared', 'image_size': 64}
        >>> validate_settings({"map_method": "$print(1)"}, "model.pt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        BadInputError: model.pt: invalid saved setting: setting map_method = '$print(1)' is not a plain name...
    """
    if not isinstance(settings, Mapping):
        raise BadInputError(source, "invalid saved settings: not a dict")
    try:
        return {str(k): _check_value(str(k), v, str(k)) for k, v in _check_keys(settings, "settings").items()}
    except ValueError as e:
        raise BadInputError(
            source, f"invalid saved setting: {e}; it is never used (a checkpoint holds data, not code)"
        ) from None


def load_model_settings(path: str | os.PathLike, key: str = "settings") -> dict[str, Any]:
    """The settings saved in a checkpoint (``{}`` when the file is missing or has none, e.g. an older model), each
    checked by :func:`validate_settings`.

    Raises:
        BadInputError: the file exists but cannot be loaded safely (see
            :func:`~monai_anomaly.utils.checkpoints.load_checkpoint`), or a setting is not of its declared type and
            values (a planted expression, a word that is not a known method); the message names the file.
    """
    if not os.path.isfile(path):
        return {}
    ckpt = load_checkpoint(path, map_location="cpu")
    value = ckpt.get(key) if isinstance(ckpt, Mapping) else None
    if value is None:
        return {}
    return validate_settings(value, path)
