"""Seeded, group-aware train/val/test splits of datalists, the normal-only training set, and datalist JSON files."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from monai_anomaly.data.layouts import is_inside_folder
from monai_anomaly.utils.enums import AnomalyKeys, Role
from monai_anomaly.utils.errors import BadInputError

__all__ = [
    "SPLITS",
    "JSON_KEYS",
    "protocol_items",
    "split_datalist",
    "select",
    "training_items",
    "unannotated_items",
    "transductive_items",
    "supervised_items",
    "check_training_split",
    "two_domain_splits",
    "write_datalist",
    "read_datalist",
]

SPLITS = ("train", "val", "test")
# split name -> key of a MONAI (Decathlon-style) datalist JSON file
JSON_KEYS = {"train": "training", "val": "validation", "test": "test"}
_PATH_KEYS = (AnomalyKeys.IMAGE.value, AnomalyKeys.MASK.value)


def _group_of(item: Mapping, group_key: str) -> str:
    for k in (group_key, AnomalyKeys.VOLUME_ID.value, AnomalyKeys.IMAGE.value):
        v = item.get(k)
        if v not in (None, ""):
            return str(v)
    raise ValueError(f"datalist item has no {group_key!r}, volume_id or image: {dict(item)}")


def _assign(groups: list[str], sizes: dict[str, int], fractions: Sequence[float], rng: np.random.Generator) -> dict:
    """Shuffle ``groups`` and cut them into consecutive runs holding ``fractions`` of the items.

    A group goes to the run its middle item falls in, so no group is split and the item fractions are met to within
    half the largest group.
    """
    order = [groups[i] for i in rng.permutation(len(groups))]
    total = sum(sizes[g] for g in order)
    bounds = np.cumsum(fractions) * total
    out: dict[str, int] = {}
    seen = 0
    for g in order:
        mid = seen + sizes[g] / 2.0
        out[g] = int(min(np.searchsorted(bounds, mid, side="right"), len(fractions) - 1))
        seen += sizes[g]
    return out


def split_datalist(
    items: Iterable[Mapping],
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    group_key: str = AnomalyKeys.GROUP.value,
    stratify: bool = True,
    anomalies_in_train: bool = False,
) -> dict[str, list[dict]]:
    """Split items into ``{"train", "val", "test"}``, seeded and group-aware.

    - Every item of a group (``item[group_key]``, else its ``volume_id``) lands in the same split.
    - Items whose ``split`` is already ``train``/``val``/``test`` (given by the layout) keep it, and the other items of
      their group follow them. When the layout gives a train and test split but no val split, ``val_fraction`` of the
      train groups become the val split (so that normal-only calibration has data).
    - Other groups are shuffled with ``seed`` and cut so that about ``val_fraction`` / ``test_fraction`` of the items
      go to val / test, separately per stratum when ``stratify`` (stratum: anomalous or not, and mixed role).
    - Unless ``anomalies_in_train``, groups holding an anomalous labelled item (label 1, role other than ``mixed``,
      no lesion ``mask``) only go to val and test, in the ratio ``val_fraction : test_fraction``: a normal-only
      method would not train on them, so putting them in train would waste them. Items with a lesion ``mask``
      (slice labels come from the mask) split like normal groups, since their lesion-free slices can train. The
      fractions then apply to the normal groups.

    Each returned item is a copy with ``split`` set.

    Args:
        items: datalist items (see ``docs/architecture.md``).
        val_fraction: fraction of items for validation.
        test_fraction: fraction of items for testing.
        seed: the random seed; the same items and seed give the same split, whatever the item order.
        group_key: item key that groups items that must not be separated.
        stratify: keep the anomalous/normal/mixed proportions in each split.
        anomalies_in_train: let anomalous groups land in train too.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.

    Raises:
        ValueError: fractions outside [0, 1) or summing to 1 or more.

    Example:
        >>> items = [{"image": f"{i}.png", "label": 0, "role": "normal", "volume_id": str(i)} for i in range(10)]
        >>> {k: len(v) for k, v in split_datalist(items, 0.2, 0.2).items()}
        {'train': 6, 'val': 2, 'test': 2}
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"need 0 <= val_fraction, test_fraction and a sum < 1, got {val_fraction}, {test_fraction}")
    items = [dict(it) for it in items]
    by_group: dict[str, list[dict]] = defaultdict(list)
    for it in items:
        by_group[_group_of(it, group_key)].append(it)

    split_of: dict[str, str] = {}
    for g, members in by_group.items():
        preset = [str(m.get(AnomalyKeys.SPLIT.value) or "") for m in members]
        preset = [s for s in preset if s in SPLITS]
        if preset:
            split_of[g] = preset[0]
    rng = np.random.default_rng(seed)
    label_k, role_k = AnomalyKeys.LABEL.value, AnomalyKeys.ROLE.value

    def stratum(g: str) -> str:
        members = by_group[g]
        mask_k = AnomalyKeys.MASK.value
        if any(int(m.get(label_k, 0)) == 1 and m.get(role_k) != Role.MIXED and not m.get(mask_k) for m in members):
            return "anomalous"
        if any(m.get(mask_k) for m in members):
            # volumes with lesion masks: their lesion-free slices are normal, so they split like normal groups
            return "masked"
        return "mixed" if any(m.get(role_k) == Role.MIXED for m in members) else "normal"

    # groups the layout gave no split: split by fractions
    free = sorted(g for g in by_group if g not in split_of)
    strata: dict[str, list[str]] = defaultdict(list)
    for g in free:
        st = stratum(g)
        if not stratify:  # one pool, apart from anomalous groups kept out of train
            st = "anomalous" if st == "anomalous" and not anomalies_in_train else "all"
        strata[st].append(g)
    sizes = {g: len(m) for g, m in by_group.items()}
    for name in sorted(strata):
        groups = strata[name]
        if not groups:
            continue
        if name == "anomalous" and not anomalies_in_train:
            tot = val_fraction + test_fraction
            fr = (0.0, val_fraction / tot, test_fraction / tot) if tot > 0 else (0.0, 0.0, 1.0)
        else:
            fr = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
        for g, idx in _assign(groups, sizes, fr, rng).items():
            split_of[g] = SPLITS[idx]

    # a layout that gave train and test but no val: carve val from the train groups
    given = {split_of[g] for g in by_group if g not in free}
    if given and "val" not in given and val_fraction > 0 and not free:
        train_groups = sorted(g for g in by_group if split_of[g] == "train")
        tstrata: dict[str, list[str]] = defaultdict(list)
        for g in train_groups:
            tstrata[stratum(g) if stratify else "all"].append(g)
        for name in sorted(tstrata):
            for g, idx in _assign(tstrata[name], sizes, (1.0 - val_fraction, val_fraction), rng).items():
                split_of[g] = SPLITS[idx]

    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for it in items:
        s = split_of[_group_of(it, group_key)]
        it[AnomalyKeys.SPLIT.value] = s
        out[s].append(it)
    return out


def select(
    items: Iterable[Mapping],
    split: str | Sequence[str] | None = None,
    roles: str | Sequence[str] | None = None,
    labels: int | Sequence[int] | None = None,
) -> list[dict]:
    """The items whose ``split``, ``role`` and ``label`` are among those given (``None``: any).

    Example:
        >>> items = [{"split": "val", "role": "normal", "label": 0}, {"split": "val", "role": "eval", "label": 1}]
        >>> select(items, split="val", labels=0)
        [{'split': 'val', 'role': 'normal', 'label': 0}]
    """

    def as_set(v, cast):
        if v is None:
            return None
        return {cast(x) for x in ([v] if isinstance(v, (str, int)) else v)}

    splits, rls, lbls = as_set(split, str), as_set(roles, str), as_set(labels, int)
    return [
        dict(it)
        for it in items
        if (splits is None or str(it.get(AnomalyKeys.SPLIT.value, "")) in splits)
        and (rls is None or str(it.get(AnomalyKeys.ROLE.value, "")) in rls)
        and (lbls is None or int(it.get(AnomalyKeys.LABEL.value, -1)) in lbls)
    ]


def training_items(
    split_items: Mapping[str, list] | Iterable[Mapping], include_mixed: bool = False, include_masked: bool = False
) -> list[dict]:
    """The training set of an unsupervised method: known normals (role ``normal`` and label 0) of the train split.

    With ``include_mixed`` the unannotated mixed set (role ``mixed``, e.g. Brainomaly's ``train/pos`` +
    ``train/neg_mixed``) is added; its ``label`` is then set to -1, so a trainer cannot use the true labels.

    Args:
        split_items: the output of :func:`split_datalist` (its ``train`` list is used) or a list of items (those whose
            ``split`` is ``train`` or ``""`` are used).
        include_mixed: add the mixed items, labels hidden.
        include_masked: add train items that carry a lesion ``mask`` (e.g. BraTS volumes): only their lesion-free
            slices may be used, so the dataset must drop slices whose mask-derived ``label`` is 1 (the bundles'
            ``SliceDataset(slice_filter=...)`` does).

    Example:
        >>> items = [{"split": "train", "role": "normal", "label": 0}, {"split": "train", "role": "mixed", "label": 1}]
        >>> training_items(items, include_mixed=True)[1]["label"]
        -1
    """
    pool = split_items["train"] if isinstance(split_items, Mapping) else select(split_items, split=("train", ""))
    out = select(pool, roles=Role.NORMAL.value, labels=0)
    if include_masked:
        out += [dict(m) for m in pool if m.get(AnomalyKeys.MASK.value) and m not in out and m.get("role") != Role.MIXED]
    if include_mixed:
        mixed = select(pool, roles=Role.MIXED.value)
        for m in mixed:
            m[AnomalyKeys.LABEL.value] = -1
        out += mixed
    return out


def unannotated_items(items: Iterable[Mapping]) -> list[dict]:
    """Copies of the mixed (unannotated) items for validation: ``label`` set to -1 so that nothing fits a threshold or
    picks a checkpoint on it, the true label kept in ``true_label`` for reporting how AUCp tracked the true AUROC.

    Example:
        >>> unannotated_items([{"role": "mixed", "label": 1}, {"role": "normal", "label": 0}])
        [{'role': 'mixed', 'label': -1, 'true_label': 1}]
    """
    out = []
    for it in items:
        if str(it.get(AnomalyKeys.ROLE.value, "")) == Role.MIXED.value:
            d = dict(it)
            d[AnomalyKeys.TRUE_LABEL.value] = int(d.get(AnomalyKeys.LABEL.value, -1))
            d[AnomalyKeys.LABEL.value] = -1
            out.append(d)
    return out


def transductive_items(items: Iterable[Mapping]) -> list[dict]:
    """The unannotated mixed items with their true labels, for Brainomaly's transductive evaluation (how well the model
    separates the very images it was trained on without their labels).

    Raises:
        ValueError: there is no mixed item with a known label.

    Example:
        >>> transductive_items([{"role": "mixed", "label": 1}, {"role": "normal", "label": 0}])
        [{'role': 'mixed', 'label': 1}]
    """
    out = [dict(it) for it in items if str(it.get(AnomalyKeys.ROLE.value, "")) == Role.MIXED.value]
    out = [it for it in out if int(it.get(AnomalyKeys.LABEL.value, -1)) in (0, 1)]
    if not out:
        raise ValueError("transductive evaluation needs an unannotated (role 'mixed') set with known labels")
    return out


def supervised_items(
    splits: Mapping[str, list],
    fit_fraction: float = 0.5,
    seed: int = 0,
    group_key: str = AnomalyKeys.GROUP.value,
) -> dict[str, list[dict]]:
    """Training and validation items of the supervised reference, on the same splits as the unsupervised methods.

    The unsupervised split keeps labelled abnormal groups out of ``train``. The supervised classifier needs some, so
    ``fit_fraction`` of the validation groups (seeded, group-aware, stratified by class) move to its training set;
    the rest stay for validation (checkpoint choice, threshold). The test split is untouched, so every method is
    tested on the same images. Only labelled items count (roles ``normal`` / ``eval``, label 0 or 1); the mixed set
    has no labels and is left out. Lesion-masked volumes keep all their slices (labels come from the mask).

    Returns:
        ``{"train": [...], "val": [...]}``.

    Example:
        >>> items = [{"image": f"{i}.png", "label": i % 2, "role": "eval", "split": "val"} for i in range(8)]
        >>> out = supervised_items({"train": [], "val": items, "test": []})
        >>> len(out["train"]), len(out["val"]), sorted({it["label"] for it in out["train"]})
        (4, 4, [0, 1])
    """
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}")

    def labelled(items: Iterable[Mapping]) -> list[dict]:
        return [
            dict(it)
            for it in items
            if str(it.get(AnomalyKeys.ROLE.value, Role.NORMAL.value)) != Role.MIXED.value
            and int(it.get(AnomalyKeys.LABEL.value, -1)) in (0, 1)
        ]

    train, val = labelled(splits.get("train", [])), labelled(splits.get("val", []))
    by_group: dict[str, list[dict]] = defaultdict(list)
    for it in val:
        by_group[_group_of(it, group_key)].append(it)
    sizes = {g: len(m) for g, m in by_group.items()}
    rng = np.random.default_rng(seed)
    fit: set[str] = set()
    for cls in (0, 1):  # stratified: each class gives fit_fraction of its groups
        groups = sorted(g for g, m in by_group.items() if max(int(x[AnomalyKeys.LABEL.value]) for x in m) == cls)
        if groups:
            fit |= {g for g, idx in _assign(groups, sizes, (fit_fraction, 1.0 - fit_fraction), rng).items() if idx == 0}
    return {
        "train": train + [it for it in val if _group_of(it, group_key) in fit],
        "val": [it for it in val if _group_of(it, group_key) not in fit],
    }


def _normal_sources(items: Iterable[Mapping]) -> int:
    """Items that give normal images: normals, and lesion-masked volumes (their lesion-free slices)."""
    return sum(
        1
        for it in items
        if (it.get("role", Role.NORMAL.value) == Role.NORMAL.value and int(it.get("label", 0)) == 0)
        or (it.get(AnomalyKeys.MASK.value) and it.get("role") != Role.MIXED)
    )


def check_training_split(splits: Mapping[str, list], root: str | os.PathLike) -> Mapping[str, list]:
    """Refuse, before any training, a split that cannot give a usable model: no normal image to train on, or none
    left to fit the threshold on (a model saved then would give blank predictions). Returns ``splits``.

    Raises:
        BadInputError: naming ``root``, with the counts and what to do.

    Example:
        >>> check_training_split({"train": [{"label": 1, "role": "eval"}], "val": [], "test": []}, "data/")
        Traceback (most recent call last):
        ...
        monai_anomaly.utils.errors.BadInputError: data/: has no normal images to train on (1 images, 1 abnormal); ...
    """
    from monai_anomaly.utils.errors import BadInputError

    every = [it for k in SPLITS for it in splits.get(k, [])]
    n_train, n_val = _normal_sources(splits.get("train", [])), _normal_sources(splits.get("val", []))
    n_all = _normal_sources(every)
    if n_train == 0:
        n_abn = sum(1 for it in every if int(it.get("label", 0)) == 1)
        raise BadInputError(
            root,
            f"has no normal images to train on ({len(every)} images, {n_abn} abnormal); an unsupervised model learns "
            "from healthy scans: put them in normal/ or label them 0 (see docs/data.md)",
        )
    if n_val == 0:
        raise BadInputError(
            root,
            f"has {n_all} normal image{'s' if n_all != 1 else ''}, none left for validation, where the threshold is "
            "fitted: add normal images (at least 2, better 20 or more) or raise --val_fraction",
        )
    return splits


def two_domain_splits(
    splits: Mapping[str, list],
    root: str | os.PathLike,
    mode: str = "two_domain",
    fraction: float = 0.5,
    seed: int = 0,
    group_key: str = AnomalyKeys.GROUP.value,
) -> dict[str, list]:
    """The splits of an unpaired two-domain translation (CycleGAN ``two_domain``): domain B is the known normals of
    the train split, domain A the images that are not known normal.

    - Where the train split has an unannotated mixed set (role ``mixed``), that set is domain A and the splits come
      back unchanged (:func:`training_items` adds it, labels hidden).
    - On a labelled layout (``normal/`` + ``abnormal/``, a ``labels.csv`` with labels 0 and 1), the unsupervised split
      keeps every abnormal group out of train. As in the brain-MRI CycleGAN work, which translates between a
      tumour and a no-tumour domain using the folders' labels, ``fraction`` of the validation split's abnormal groups
      (seeded, group-aware, at least one, and at least one left for validation where there are two or more) move to
      train as domain A: role ``mixed`` (so :func:`training_items` takes them) and ``label`` -1 (no trainer reads
      it), and no other key (a batch collates only items with the same keys). The test split is untouched, so the
      method is tested on the same images as the others. The move is logged.

    Any other ``mode`` returns ``splits`` unchanged.

    Raises:
        BadInputError: naming ``root``, when domain A would hold no image (no mixed set, no labelled abnormal image
            in the validation split), instead of training nothing.

    Example:
        >>> items = [{"image": f"n{i}.png", "label": 0, "role": "normal", "split": "train"} for i in range(4)]
        >>> items += [{"image": f"a{i}.png", "label": 1, "role": "eval", "split": "val"} for i in range(4)]
        >>> out = two_domain_splits({"train": items[:4], "val": items[4:], "test": []}, "data/")
        >>> sorted((it["role"], it["label"]) for it in out["train"])
        [('mixed', -1), ('mixed', -1), ('normal', 0), ('normal', 0), ('normal', 0), ('normal', 0)]
        >>> len(out["val"])
        2
    """
    if mode != "two_domain":
        return dict(splits)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    role_k, label_k, mask_k = AnomalyKeys.ROLE.value, AnomalyKeys.LABEL.value, AnomalyKeys.MASK.value
    out = {k: list(v) for k, v in splits.items()}
    train, val = out.get("train", []), out.get("val", [])
    if any(str(it.get(role_k, "")) == Role.MIXED.value for it in train):
        return out
    abnormal = [
        it
        for it in val
        if int(it.get(label_k, 0)) == 1 and str(it.get(role_k, "")) != Role.MIXED.value and not it.get(mask_k)
    ]
    groups = sorted({_group_of(it, group_key) for it in abnormal})
    is_abnormal = {id(it) for it in abnormal}
    if not groups:
        raise BadInputError(
            root,
            "two_domain translation needs images of the abnormal domain (A): there is no unannotated mixed set in "
            "the training split and no image labelled abnormal (label 1, no lesion mask) in the validation split; "
            "add abnormal/ images or a mixed set (see docs/data.md), or use --cyclegan_mode identity",
        )
    n_move = min(len(groups), max(1, int(round(fraction * len(groups)))))
    if n_move == len(groups) and len(groups) > 1 and fraction < 1.0:
        n_move -= 1  # keep one abnormal group for validation
    moved = {groups[i] for i in np.random.default_rng(seed).permutation(len(groups))[:n_move]}
    domain_a = []
    for it in val:
        if id(it) in is_abnormal and _group_of(it, group_key) in moved:
            d = dict(it)
            d.update({role_k: Role.MIXED.value, label_k: -1, AnomalyKeys.SPLIT.value: "train"})
            domain_a.append(d)
    out["val"] = [it for it in val if not (id(it) in is_abnormal and _group_of(it, group_key) in moved)]
    out["train"] = train + domain_a
    logging.getLogger("monai_anomaly").info(
        "two_domain: domain A (abnormal) = %d image(s) labelled abnormal, from %d of the %d abnormal validation "
        "group(s), moved to training by their labels; domain B = the training normals; test split unchanged",
        len(domain_a),
        len(moved),
        len(groups),
    )
    return out


def _rel(value: str, base: Path | None) -> str:
    if base is None:
        return value
    try:
        return Path(os.path.relpath(value, base)).as_posix()
    except ValueError:  # another drive on Windows
        return value


def write_datalist(
    path: str | os.PathLike,
    split_items: Mapping[str, list[Mapping]],
    relative: bool = True,
    metadata: Mapping | None = None,
) -> Path:
    """Write ``{"training": [...], "validation": [...], "test": [...]}``, a datalist MONAI bundles can read.

    Args:
        path: the JSON file to write (its folder is created).
        split_items: ``{"train": [...], "val": [...], "test": [...]}`` (the output of :func:`split_datalist`).
        relative: write ``image``/``mask`` paths relative to the JSON file's folder (so the data and the JSON can move
            together); otherwise as they are. Data outside that folder gives paths starting with ``..``, which
            :func:`read_datalist` refuses unless ``allow_outside=True``: keep the JSON in (or above) the data folder.
        metadata: extra top-level keys (``name``, ``description``, ...).

    Returns:
        the path written.

    Note:
        :func:`monai.data.load_decathlon_datalist` (``is_segmentation=False``) reads the file, but it also joins
        any other string value that happens to name an existing path next to the JSON file (e.g. a ``cls`` of
        ``"normal"`` beside a ``normal/`` folder); :func:`read_datalist` only resolves ``image`` and ``mask``.

    Example:
        >>> write_datalist("datalist.json", split_datalist(build_datalist("data").items))  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.absolute() if relative else None
    unknown = set(split_items) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split name(s) {sorted(unknown)}; expected {SPLITS}")
    doc: dict = dict(metadata or {})
    for s in SPLITS:
        rows = []
        for it in split_items.get(s, []):
            row = {str(k): (str(v) if hasattr(v, "value") else v) for k, v in it.items()}
            row[AnomalyKeys.SPLIT.value] = s
            for k in _PATH_KEYS:
                if row.get(k):
                    row[k] = _rel(str(row[k]), base)
            rows.append(row)
        doc[JSON_KEYS[s]] = rows
    path.write_text(json.dumps(doc, indent=1))
    return path


def read_datalist(
    path: str | os.PathLike, base_dir: str | os.PathLike | None = None, allow_outside: bool = False
) -> dict[str, list[dict]]:
    """Read a datalist JSON file into ``{"train", "val", "test"}``; relative ``image``/``mask`` paths are resolved
    against ``base_dir`` (default: the JSON file's folder). Missing keys give empty lists.

    Args:
        path: the JSON file.
        base_dir: the folder relative paths start from, and that every path must lie in (default: the file's folder).
        allow_outside: accept ``image``/``mask`` paths outside ``base_dir`` (``..`` escapes, absolute paths
            elsewhere), e.g. a datalist written by :func:`write_datalist` away from its data.

    Raises:
        BadInputError: the file is missing, not JSON, or not a datalist, or (unless ``allow_outside``) a path in it
            lies outside ``base_dir``; the message names the file, the entry and the path.

    Example:
        >>> train = read_datalist("datalist.json")["train"]  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "no such datalist file")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInputError(path, f"not a readable JSON file ({e})") from e
    if not isinstance(doc, dict) or not any(k in doc for k in JSON_KEYS.values()):
        raise BadInputError(path, f"not a datalist (expected keys {list(JSON_KEYS.values())})")
    base = Path(base_dir).absolute() if base_dir is not None else path.parent.absolute()
    out: dict[str, list[dict]] = {}
    for s, key in JSON_KEYS.items():
        rows = doc.get(key) or []
        items = []
        for n, row in enumerate(rows):
            row = {AnomalyKeys.IMAGE.value: row} if isinstance(row, str) else dict(row)
            for k in _PATH_KEYS:
                if not row.get(k):
                    continue
                value = str(row[k])
                if not os.path.isabs(value):
                    row[k] = os.path.normpath(os.path.join(base, value))
                if not allow_outside and not is_inside_folder(row[k], base):
                    raise BadInputError(
                        path,
                        f"{key}[{n}]: {k} {value!r} is outside the dataset folder {base} (pass allow_outside=True "
                        "to allow paths elsewhere)",
                    )
            items.append(row)
        out[s] = items
    return out


def protocol_items(
    items: Iterable[Mapping],
    dataset_dir: str | os.PathLike,
    split_column: str | None = None,
    exclude_classes: Sequence[str] = (),
    csv_name: str = "labels.csv",
) -> list[dict]:
    """Items arranged for a published protocol: a preset split from a ``labels.csv`` column, some classes left out.

    Papers often train and test on a dataset's own train / test folders (e.g. the Kaggle brain tumour set's
    ``Training`` / ``Testing``, recorded in the shared copy's ``orig_split`` column) and leave some classes out. This
    sets each item's ``split`` from ``split_column`` (values ``train`` / ``val`` / ``test``; anything else is left to
    :func:`split_datalist`) and drops items whose ``cls`` is in ``exclude_classes``. Note that a dataset's own split
    is usually not group-aware: near-duplicates can sit on both sides (see ``python -m monai_anomaly audit``).

    Args:
        items: datalist items (``image`` paths inside ``dataset_dir``).
        dataset_dir: the dataset folder holding ``csv_name``.
        split_column: the ``csv_name`` column holding each file's split (``None``: keep the items' own).
        exclude_classes: classes (``cls``) to leave out.
        csv_name: the table with a ``path`` (or ``image``) column relative to ``dataset_dir``.

    Returns:
        copies of the kept items.

    Raises:
        ValueError: ``split_column`` is not a column of the table.
        FileNotFoundError: no table in ``dataset_dir``.
    """
    root = Path(dataset_dir).resolve()
    splits: dict[str, str] = {}
    if split_column:
        table = root / csv_name
        if not table.is_file():
            raise FileNotFoundError(f"{table}: no {csv_name} to read the {split_column!r} split from")
        with open(table, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if split_column not in (reader.fieldnames or []):
                raise ValueError(f"{table}: no column {split_column!r} (columns: {reader.fieldnames})")
            for row in reader:
                rel = row.get("path") or row.get("image") or ""
                splits[Path(rel).as_posix()] = str(row[split_column]).strip().lower()
    out = []
    drop = {str(c) for c in exclude_classes}
    for it in items:
        if str(it.get(AnomalyKeys.CLASS.value, "")) in drop:
            continue
        d = dict(it)
        if split_column:
            try:
                rel = Path(str(d[AnomalyKeys.IMAGE.value])).resolve().relative_to(root).as_posix()
            except ValueError:
                rel = ""
            value = splits.get(rel, "")
            d[AnomalyKeys.SPLIT.value] = value if value in SPLITS else ""
        out.append(d)
    return out
