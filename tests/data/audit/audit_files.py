"""Synthetic data sets for the data audit's tests: brain-like PNG slices, near-copies, normal/abnormal folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

__all__ = ["brain", "save", "noisy_copy", "normal_abnormal_set", "group_of"]


def brain(rng: np.random.Generator, size: int = 64, lesion: bool = False) -> np.ndarray:
    """A brain-like axial slice: a textured, tilted ellipse with a bright rim, dark ventricles, optionally a lesion."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    cy, cx = size / 2 + rng.uniform(-5, 5, 2)
    ay, ax = rng.uniform(0.28, 0.44) * size, rng.uniform(0.22, 0.38) * size
    th = rng.uniform(-0.6, 0.6)
    dy, dx = yy - cy, xx - cx
    u, v = dy * np.cos(th) + dx * np.sin(th), -dy * np.sin(th) + dx * np.cos(th)
    r = (u / ay) ** 2 + (v / ax) ** 2
    tex = gaussian_filter(rng.normal(size=(size, size)), rng.uniform(0.8, 2.5))
    tex /= tex.std() + 1e-8
    img = np.where(r < 1, rng.uniform(60, 140) + rng.uniform(8, 25) * tex, 0.0)
    img += np.where((r >= 0.82) & (r < 1.0), rng.uniform(40, 90), 0.0)  # skull rim
    for _ in range(int(rng.integers(1, 4))):  # ventricles
        oy, ox = rng.uniform(-0.4, 0.4, 2) * np.array([ay, ax])
        rr = ((yy - cy - oy) / rng.uniform(2, 6)) ** 2 + ((xx - cx - ox) / rng.uniform(2, 6)) ** 2
        img = np.where(rr < 1, img * 0.35, img)
    if lesion:  # a small bright blob inside the brain
        while True:
            ly, lx = rng.uniform(-0.5, 0.5, 2) * np.array([ay, ax])
            if (ly / ay) ** 2 + (lx / ax) ** 2 < 0.4:
                break
        rad = rng.uniform(2.0, 3.5)
        img = img + 70 * np.exp(-((yy - cy - ly) ** 2 + (xx - cx - lx) ** 2) / rad**2)
    return np.clip(img, 0, 255).astype(np.uint8)


def save(arr: np.ndarray, path: Path, fmt: str = "PNG", quality: int = 90, rgb: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if rgb:
        img = img.convert("RGB")
    img.save(path, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return path


def noisy_copy(arr: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    return np.clip(arr.astype(np.float64) + rng.normal(0, sigma, arr.shape), 0, 255).astype(np.uint8)


def normal_abnormal_set(root: Path, n: int = 16, seed: int = 0, lesion: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        save(brain(rng), root / "normal" / f"n{i:03d}.png")
        save(brain(rng, lesion=lesion), root / "abnormal" / "lesion" / f"a{i:03d}.png")
    return root


def group_of(result, name: str) -> dict | None:
    for g in result.groups:
        if any(Path(p).name == name for p in g["paths"]):
            return g
    return None
