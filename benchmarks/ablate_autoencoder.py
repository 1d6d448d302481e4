"""Ablate the autoencoder's defaults on the VALIDATION split (never the test split) of a shared 2D set or BraTS.

Each variant changes one thing against a base setting: intensity scaling (fixed 8-bit range vs per-image
percentiles), network (dense 16-d latent vs the convolutional bottleneck), loss (MSE vs L1), augmentation, score
(mean squared error vs mean absolute error, whole image vs foreground). Slices are prepared once with the package's own
transforms and held in memory, so a variant costs only its training loop; validation slice AUROC is computed with
``monai_anomaly.metrics``. Use it to find which default turns the signal around, then fix the bundle's default.

Example:
    PYTHONPATH=. python benchmarks/ablate_autoencoder.py --dataset ../shared/data/brain_tumor_mri_4class \
        --epochs 100 --variants base spatial_latent percentile l1 affine --out /tmp/ablate_bt.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Compose, RandAffine, ScaleIntensityRanged
from monai.utils import set_determinism
from sklearn.metrics import roc_auc_score as auroc

from monai_anomaly.data.layouts import build_datalist
from monai_anomaly.data.splits import protocol_items, split_datalist, training_items
from monai_anomaly.networks.autoencoder import ConvAutoEncoder
from monai_anomaly.networks.dense_ae import DenseAutoEncoder
from monai_anomaly.transforms.intensity import ForegroundMaskd, PercentileScaled
from monai_anomaly.transforms.io import LoadScand
from monai_anomaly.transforms.noise import RandCoarseNoise
from monai_anomaly.transforms.slicing import VolumeToSlicesd
from monai_anomaly.transforms.spatial import ResizeToSquared

__all__ = ["BASE", "VARIANTS", "load_split", "run_variant", "main"]

BASE: dict[str, Any] = {
    "scaling": "fixed",  # fixed | percentile
    "net": "dense",  # dense | spatial
    "latent_size": 16,
    "up_mode": "resize",
    "loss": "mse",  # mse | l1
    "aug": "none",  # none | affine
    "score": "mse",  # mse | mae
    "score_region": "all",  # all | foreground
    "lr": 1e-3,
    "batch_size": 64,
    "noise": 0.0,  # coarse-noise denoising: std of the noise (0 = plain AE)
}
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "percentile": {"scaling": "percentile"},
    "spatial_latent": {"net": "spatial"},
    "l1": {"loss": "l1"},
    "affine": {"aug": "affine"},
    "mae_score": {"score": "mae"},
    "fg_score": {"score_region": "foreground"},
    "deconv": {"up_mode": "deconv"},
    "latent32": {"latent_size": 32},
    "old_defaults": {"scaling": "percentile", "net": "spatial", "loss": "l1", "aug": "affine", "score": "mae"},
    "dae": {"noise": 0.2},
    "dae_unet": {"net": "unet", "noise": 0.2, "lr": 1e-4},
    # AE-U (Mao et al. 2020): the dense AE's decoder predicts a mean and a log-variance per pixel, trained with
    # mean((x - mu)^2 / sigma^2 + log sigma^2) on normals
    "aeu": {"net": "dense_u", "loss": "nll"},
    "aeu_lr3e-4": {"net": "dense_u", "loss": "nll", "lr": 3e-4},
    "aeu_b32": {"net": "dense_u", "loss": "nll", "batch_size": 32},
}


def _prep(scaling: str, size: int, volumes: bool, min_foreground: float = 0.05) -> Compose:
    t: list[Any] = [
        LoadScand(keys=["image", "mask"], allow_constant=[False, True], allow_missing_keys=True),
        ForegroundMaskd(keys="image", mask_keys="foreground"),
    ]
    if scaling == "fixed" and not volumes:
        t.append(ScaleIntensityRanged(keys="image", a_min=0.0, a_max=255.0, b_min=-1.0, b_max=1.0, clip=True))
    else:  # per-volume percentiles inside the foreground, to [-1, 1]
        t.append(PercentileScaled(keys="image", b_min=-1.0, b_max=1.0, mask_key="foreground"))
    keys = ["image", "foreground", "mask"]
    t += [
        VolumeToSlicesd(
            keys=keys,
            axis=2,
            min_foreground=min_foreground,
            foreground_key="foreground",
            label_from_mask_key="mask",
            allow_missing_keys=True,
        ),
        ResizeToSquared(
            keys=keys,
            size=size,
            interp_mode=["bilinear", "nearest", "nearest"],
            anti_aliasing=[True, False, False],
            allow_missing_keys=True,
        ),
    ]
    return Compose(t)


def load_split(
    dataset: str,
    split: str,
    scaling: str,
    size: int,
    exclude: tuple[str, ...] = (),
    protocol: str = "",
    min_foreground: float = 0.05,
) -> dict[str, Any]:
    """Slices of one split as tensors: ``image`` (N, 1, S, S), ``foreground``, ``label``, ``cls``, ``group`` and
    ``position`` (the slice's place among its volume's kept slices, 0 at the first and 1 at the last; 0.5 for a 2D
    image). ``dataset`` is a shared set's folder or a CSV manifest (whose paths may lie outside its folder).

    ``protocol="orig_split"`` uses the dataset's own train/test split (``labels.csv`` column ``orig_split``), split
    file by file (not by near-duplicate group), as published protocols do; the default is the group-aware split.
    """
    dl = build_datalist(dataset, allow_outside=True) if str(dataset).endswith(".csv") else build_datalist(dataset)
    if protocol:
        items = protocol_items(dl.items, dataset, split_column=protocol, exclude_classes=exclude)
        splits = split_datalist(items, val_fraction=0.15, test_fraction=0.3, seed=0, group_key="volume_id")
    else:
        splits = split_datalist(dl.items, val_fraction=0.15, test_fraction=0.3, seed=0)
    items = training_items(splits["train"], include_masked=True) if split == "train" else splits[split]
    items = [i for i in items if i.get("cls") not in exclude]
    volumes = any(str(i["image"]).endswith((".nii", ".nii.gz")) for i in items)
    prep = _prep(scaling, size, volumes, min_foreground)
    imgs, fgs, labels, classes, groups, positions = [], [], [], [], [], []
    for it in items:
        out = prep({k: v for k, v in it.items() if k in ("image", "mask") and v})
        out = out if isinstance(out, list) else [out]
        kept = [int(s.get("slice_index", 0)) for s in out]
        lo, span = min(kept), max(kept) - min(kept)
        for s in out:
            lab = int(s.get("label", it["label"]))
            if split == "train" and lab != 0:
                continue
            imgs.append(torch.as_tensor(np.asarray(s["image"]), dtype=torch.float32))
            fgs.append(torch.as_tensor(np.asarray(s["foreground"]), dtype=torch.float32))
            labels.append(lab)
            classes.append(str(it.get("cls", "")))
            groups.append(str(it.get("group") or it.get("volume_id") or it["image"]))
            positions.append((int(s.get("slice_index", 0)) - lo) / span if span else 0.5)
    return {
        "image": torch.stack(imgs),
        "foreground": torch.stack(fgs),
        "label": np.asarray(labels),
        "cls": classes,
        "group": groups,
        "position": np.asarray(positions, dtype=np.float64),
    }


def _net(cfg: dict[str, Any], size: int) -> torch.nn.Module:
    if cfg["net"] == "unet":
        from monai.networks.nets import BasicUNet

        return BasicUNet(2, 1, 1, features=(16, 32, 64, 128, 256, 16), norm=("group", {"num_groups": 8}))
    if cfg["net"] in ("dense", "dense_u"):
        out = 2 if cfg["net"] == "dense_u" else 1
        return DenseAutoEncoder(2, 1, out, (size, size), latent_size=cfg["latent_size"], up_mode=cfg["up_mode"])
    return ConvAutoEncoder(2, 1, 1, channels=(16, 32, 64, 128), strides=(2, 2, 2, 2), num_res_units=0, final_act=None)


def coarse_noise(x: torch.Tensor, std: float, scale: int = 4, gen: torch.Generator | None = None) -> torch.Tensor:
    """The package's coarse noise (Kascenas et al. 2022), minus the input (so it can be added)."""
    t = RandCoarseNoise(std=std, scale=scale, fg_threshold=float(x.min()) + 0.01, batched=True)
    t.set_random_state(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    return t(x) - x


def run_variant(
    name: str,
    train: dict,
    val: dict,
    epochs: int,
    size: int,
    seed: int = 0,
    eval_every: int = 0,
    keep_scores: bool = False,
    **over: Any,
) -> dict:
    """Train one variant on ``train`` normals, return validation AUROCs and timings (``keep_scores``: also every
    validation slice's scores, ``"scores"``, and labels, ``"labels"``, as numpy arrays, for further analysis)."""
    cfg = {**BASE, **VARIANTS.get(name, {}), **over}
    set_determinism(seed)
    tr, va = train[cfg["scaling"]], val[cfg["scaling"]]
    net = _net(cfg, size)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    aff = RandAffine(prob=0.5, rotate_range=0.1, scale_range=0.05, translate_range=2, padding_mode="zeros")
    aff.set_random_state(seed)
    gen = torch.Generator().manual_seed(seed)
    x_all = tr["image"]
    n = len(x_all)
    t0 = time.perf_counter()
    losses = []
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        tot = 0.0
        for b in range(0, n, cfg["batch_size"]):
            x = x_all[perm[b : b + cfg["batch_size"]]]
            if len(x) < 2:
                continue
            if cfg["aug"] == "affine":
                x = torch.stack([torch.as_tensor(aff(xi)) for xi in x])
            inp = x + coarse_noise(x, cfg["noise"], gen=gen) if cfg["noise"] > 0 else x
            rec = net(inp)
            if cfg["loss"] == "nll":
                loss = heteroscedastic_nll(rec[:, :1], rec[:, 1:], x).mean()
            else:
                loss = F.mse_loss(rec, x) if cfg["loss"] == "mse" else F.l1_loss(rec, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(x)
        losses.append(tot / n)
        if eval_every and (len(losses) % eval_every == 0) and len(losses) < epochs:
            sc, lb = _evaluate(net, cfg, va)
            print(f"  {name} epoch {len(losses)} loss {losses[-1]:.4f} val_auroc {_aurocs(sc, lb)}", flush=True)
    train_s = time.perf_counter() - t0
    sc, lab = _evaluate(net, cfg, va)
    out = {
        "variant": name,
        "config": cfg,
        "epochs": epochs,
        "train_s": round(train_s, 1),
        "final_train_loss": losses[-1],
        "val_auroc": _aurocs(sc, lab),
    }
    out["val_auroc_energy_matched"] = _energy_matched_aurocs(sc, lab, sc["inv_detail_energy"])
    cls = np.asarray(va["cls"])
    groups = {c: [c] for c in sorted(set(cls[lab == 1]))}
    if {"glioma", "meningioma"} <= set(cls):
        groups["glioma+meningioma"] = ["glioma", "meningioma"]
    for gname, members in groups.items():
        sel = (lab == 0) | np.isin(cls, members)
        out[f"val_auroc_{gname}"] = _aurocs({k: v[sel] for k, v in sc.items()}, lab[sel])
    if keep_scores:
        out["scores"], out["labels"] = sc, lab
    return out


SCORES = ("mse", "mae", "mse_fg", "mse_rel_blur", "mse_rel_energy", "mse_top1", "mse_top5", "mse_p99")


def _blur(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    r = int(3 * sigma)
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype) ** 2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, -1)
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    xp = F.conv2d(xp, k.view(1, 1, 1, -1))
    return F.conv2d(xp, k.view(1, 1, -1, 1))


def heteroscedastic_nll(mu: torch.Tensor, logvar: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """AE-U's per-pixel loss ``(x - mu)^2 / sigma^2 + log sigma^2`` (variance clamped at 1e-6, as the package)."""
    var = logvar.exp().clamp_min(1e-6)
    return (x - mu) ** 2 / var + var.log()


def erode(fg: torch.Tensor, px: int) -> torch.Tensor:
    """The foreground mask eroded by ``px`` pixels (min-pool)."""
    if px <= 0:
        return fg
    return -F.max_pool2d(-fg, 2 * px + 1, stride=1, padding=px)


def _top1(m: torch.Tensor) -> torch.Tensor:
    ranked = m.flatten(1).sort(1, descending=True).values
    return ranked[:, : max(1, ranked.shape[1] // 100)].mean(1)


def _fg_median(m: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """Per-image median of ``m`` over the foreground (the whole image where it has none)."""
    out = []
    for mi, fi in zip(m.flatten(1), fg.flatten(1)):
        v = mi[fi > 0.5] if bool((fi > 0.5).any()) else mi
        out.append(v.median())
    return torch.stack(out).clamp_min(1e-8)


def all_scores(
    img: torch.Tensor,
    rec: torch.Tensor,
    fg: torch.Tensor,
    logvar: torch.Tensor | None = None,
    norm: dict[str, torch.Tensor] | None = None,
) -> dict[str, np.ndarray]:
    """Slice scores of several kinds from one reconstruction (cheap: no retraining per score).

    With ``logvar`` (AE-U) the variance-normalised scores ``vn_*``; with ``norm`` (per-pixel mean and std of the
    squared residual over held-out normal validation images) the normative z-map scores ``z_*``; ``*_ero3`` mask the
    map by the foreground eroded by 3 pixels (64-px images).
    """
    extra: dict[str, np.ndarray] = {}
    sq = (rec - img) ** 2
    ero = erode(fg, 3)
    extra["mse_top1_fg"] = _top1(sq * fg).numpy()
    extra["mse_top1_ero3"] = _top1(sq * ero).numpy()
    # the map over its own median in the foreground: a lesion is a local departure, a sharper or noisier image
    # raises the whole map (a site or scanner difference)
    extra["mse_top1_ero3_rel"] = (_top1(sq * ero) / _fg_median(sq, fg)).numpy()
    # input complexity (Serra et al., ICLR 2020): an AE leaves the fine detail it cannot code in its residual, so
    # the map is divided by the image's own detail energy, mean of (x - blur(x))^2 over the foreground
    detail = (img - _blur(img)) ** 2
    cx = ((detail * fg).flatten(1).sum(1) / fg.flatten(1).sum(1).clamp_min(1)).clamp_min(1e-8)
    extra["inv_detail_energy"] = (1.0 / cx).numpy()  # no network at all: how far sharpness alone separates the classes
    extra["cx_top1_ero3"] = (_top1(sq * ero) / cx).numpy()
    extra["cx_top1_fg"] = (_top1(sq * fg) / cx).numpy()
    extra["cx_mean_fg"] = (((sq * fg).flatten(1).sum(1) / fg.flatten(1).sum(1).clamp_min(1)) / cx).numpy()
    cx_ero = ((detail * ero).flatten(1).sum(1) / ero.flatten(1).sum(1).clamp_min(1)).clamp_min(1e-8)
    extra["cxe_top1_ero3"] = (_top1(sq * ero) / cx_ero).numpy()
    extra["cxe_mean_ero3"] = (((sq * ero).flatten(1).sum(1) / ero.flatten(1).sum(1).clamp_min(1)) / cx_ero).numpy()
    if logvar is not None:
        vn = sq / logvar.exp().clamp_min(1e-6)
        extra["vn_top1_ero3_rel"] = (_top1(vn * ero) / _fg_median(vn, fg)).numpy()
        extra["vn_mean"] = vn.flatten(1).mean(1).numpy()
        extra["vn_top1"] = _top1(vn).numpy()
        extra["vn_top1_fg"] = _top1(vn * fg).numpy()
        extra["vn_top1_ero3"] = _top1(vn * ero).numpy()
    if norm is not None:
        z = ((sq - norm["mean"]) / norm["std"]).clamp_min(0)
        extra["z_mean_fg"] = ((z * fg).flatten(1).sum(1) / fg.flatten(1).sum(1).clamp_min(1)).numpy()
        extra["z_top1_fg"] = _top1(z * fg).numpy()
        extra["z_top1_ero3"] = _top1(z * ero).numpy()
        if "vn_mean" in norm and logvar is not None:
            vz = ((vn - norm["vn_mean"]) / norm["vn_std"]).clamp_min(0)
            extra["vnz_top1_fg"] = _top1(vz * fg).numpy()
    se = sq.flatten(1)
    mse = se.mean(1)
    blur_mse = ((_blur(img) - img) ** 2).flatten(1).mean(1)
    f = fg.flatten(1)
    centred = img.flatten(1) - img.flatten(1).mean(1, keepdim=True)
    ranked = se.sort(1, descending=True).values
    k1, k5 = max(1, se.shape[1] // 100), max(1, se.shape[1] // 20)
    return {
        "mse_top1": ranked[:, :k1].mean(1).numpy(),  # mean of the top 1 % pixels of the squared-error map
        "mse_top5": ranked[:, :k5].mean(1).numpy(),
        "mse_p99": torch.quantile(se, 0.99, dim=1).numpy(),
        "mse": mse.numpy(),
        "mae": (rec - img).abs().flatten(1).mean(1).numpy(),
        "mse_fg": ((se * f).sum(1) / f.sum(1).clamp_min(1)).numpy(),
        "mse_rel_blur": (mse / blur_mse.clamp_min(1e-8)).numpy(),
        "mse_rel_energy": (mse / (centred**2).mean(1).clamp_min(1e-8)).numpy(),
        **extra,
    }


def _normative(sq: torch.Tensor, vn: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per-pixel mean and std of the squared residual (and of AE-U's normalised one) over normal slices."""
    norm = {"mean": sq.mean(0, keepdim=True), "std": sq.std(0, keepdim=True) + 1e-3 * float(sq.std())}
    if vn is not None:
        norm.update(vn_mean=vn.mean(0, keepdim=True), vn_std=vn.std(0, keepdim=True) + 1e-3 * float(vn.std()))
    return norm


def _evaluate(net: torch.nn.Module, cfg: dict[str, Any], va: dict) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every validation slice. The normative ``z_*`` scores are cross-fitted by group (volume or
    near-duplicate group): the validation groups are cut in two halves (seeded), and each half is scored with the
    per-pixel statistics of the other half's normal slices, so no slice is calibrated on itself or on its neighbours."""
    net.eval()
    with torch.no_grad():
        out = torch.cat([net(va["image"][i : i + 256]) for i in range(0, len(va["image"]), 256)])
    recs, logvar = (out[:, :1], out[:, 1:]) if out.shape[1] == 2 else (out, None)
    lab = va["label"]
    sq = (recs - va["image"]) ** 2
    vn = None if logvar is None else sq / logvar.exp().clamp_min(1e-6)
    groups = np.asarray(va["group"])
    uniq = np.random.default_rng(0).permutation(sorted(set(groups)))
    half = np.isin(groups, uniq[: len(uniq) // 2])
    parts = []
    for fold in (half, ~half):
        fit = (~fold) & (lab == 0)
        norm = _normative(sq[fit], None if vn is None else vn[fit])
        idx = np.flatnonzero(fold)
        lv = None if logvar is None else logvar[idx]
        parts.append((idx, all_scores(va["image"][idx], recs[idx], va["foreground"][idx], lv, norm)))
    order = np.concatenate([p[0] for p in parts])
    sc = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    inv = np.argsort(order)
    return {k: v[inv] for k, v in sc.items()}, lab


def _energy_matched_aurocs(
    sc: dict[str, np.ndarray], lab: np.ndarray, inv_energy: np.ndarray, bins: int = 5
) -> dict[str, float]:
    """AUROC within quintiles of the images' detail energy, averaged with weights n_normal x n_abnormal per bin.

    Where normals and abnormals differ in sharpness (another source or scanner), any score that follows sharpness
    ranks them apart without seeing a lesion; compared only with images of similar sharpness, a score must find
    something else. Bins without both classes are left out.
    """
    edges = np.quantile(inv_energy, np.linspace(0, 1, bins + 1)[1:-1])
    which = np.digitize(inv_energy, edges)
    out = {}
    for k, v in sc.items():
        num = den = 0.0
        for b in range(bins):
            sel = which == b
            n1, n0 = int(lab[sel].sum()), int((lab[sel] == 0).sum())
            if n1 and n0:
                num += auroc(lab[sel], v[sel]) * n1 * n0
                den += n1 * n0
        out[k] = round(num / den, 3) if den else float("nan")
    return out


def _aurocs(sc: dict[str, np.ndarray], lab: np.ndarray) -> dict[str, float]:
    return {k: round(float(auroc(lab, v)), 3) for k, v in sc.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--out", required=True)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--protocol", default="", help="labels.csv split column for a published protocol (orig_split)")
    p.add_argument("--exclude", nargs="*", default=[], help="classes left out (e.g. pituitary)")
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    scalings = {VARIANTS[v].get("scaling", BASE["scaling"]) for v in a.variants}
    ex = tuple(a.exclude)
    train = {s: load_split(a.dataset, "train", s, a.size, ex, a.protocol) for s in scalings}
    val = {s: load_split(a.dataset, "val", s, a.size, ex, a.protocol) for s in scalings}
    s0 = next(iter(scalings))
    print(
        f"train {len(train[s0]['image'])} slices, val {len(val[s0]['image'])} ({int(val[s0]['label'].sum())} anomalous)"
    )
    results = []
    for v in a.variants:
        r = run_variant(v, train, val, a.epochs, a.size, eval_every=a.eval_every)
        results.append(r)
        print(
            json.dumps({k: (round(x, 3) if isinstance(x, float) else x) for k, x in r.items() if k != "config"}),
            flush=True,
        )
        Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
