"""Settings stored with a model: what inference needs to preprocess and score exactly as training did."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from monai_anomaly.utils.checkpoints import load_checkpoint

__all__ = ["ModelSettings", "load_model_settings"]

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


def load_model_settings(path: str | os.PathLike, key: str = "settings") -> dict[str, Any]:
    """The settings saved in a checkpoint (``{}`` when the file is missing or has none, e.g. an older model).

    Raises:
        BadInputError: the file exists but cannot be loaded safely (see
            :func:`~monai_anomaly.utils.checkpoints.load_checkpoint`); the message names it.
    """
    if not os.path.isfile(path):
        return {}
    ckpt = load_checkpoint(path, map_location="cpu")
    value = ckpt.get(key) if isinstance(ckpt, Mapping) else None
    return dict(value) if isinstance(value, Mapping) else {}
