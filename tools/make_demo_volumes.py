"""Build the embedded demo volumes from ../shared/data/ixi_t1_2mm_sample (IXI, CC BY-SA 3.0).

Copies the two healthy IXI T1 volumes (2 mm, uint8; reoriented to RAS and cropped to the brain's axial slabs) and
writes a third file: the second volume with clearly labelled SYNTHETIC lesions (two smooth ellipsoids, one brighter
and one darker than the tissue) and their mask. No real anomalous volume can be shipped (BraTS terms do not grant
redistribution), so the demo shows the
volume path (volume score, per-slice scores, NIfTI heatmap) on a synthetic lesion; it is never used for benchmarks.

``manifest.csv`` gives the demo's split: IXI012 trains, IXI015 (healthy) is the validation normal that fits the
thresholds, and the synthetic-lesion copy of IXI015 is the test volume.

Usage:
    python tools/make_demo_volumes.py --src ../shared/data/ixi_t1_2mm_sample --dst monai_anomaly/sample_data/volumes
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import nibabel as nib
import numpy as np

TRAIN, HEALTHY = "IXI012-HH-1211_T1", "IXI015-HH-1258_T1"
Z_RANGE = (58, 110)  # axial RAS slabs kept: from above the skull base (orbits, sella) to the vertex (2 mm voxels)
# (RAS voxel centre in the uncropped volume, radii in voxels of 2 mm, gain relative to --gain): a brighter and a
# darker lesion of about 26-30 mm in-plane radius (a glioma with its oedema, as in BraTS), on separate axial slabs so
# that about half of the slices stay lesion-free
LESIONS = [((60, 52, 92), (14, 15, 7), 1.5), ((30, 60, 70), (13, 14, 7), -0.7)]
LESION = f"{HEALTHY}_SYNTHETIC_LESION"
MASK_MIN_CHANGE = 0.05  # a voxel is in the mask when the lesion changes it by >= 5 % of the tissue's median
README = """# Demo volumes (the embedded 3D sample)

- `{train}.nii.gz`, `{healthy}.nii.gz`: two healthy T1 brain MRI volumes of the IXI dataset (Imperial College
  London, brain-development.org/ixi-dataset), downsampled to 2 mm uint8 by CBICA/NiChart_Project @ 1a04acb, then
  reoriented to RAS and cropped to the axial slabs {z0}-{z1} (the brain above the skull base) by
  `tools/make_demo_volumes.py`. License: **CC BY-SA 3.0** (acknowledge "IXI project,
  brain-development.org/ixi-dataset"); these files are shared under the same licence.
- `{lesion}.nii.gz`: **SYNTHETIC LESIONS, NOT A REAL PATIENT.** `{healthy}` with two smooth ellipsoids of 26-30 mm
  in-plane radius, one brighter (up to +{up:.0%}) and one darker (down to -{down:.0%}) than the median intensity of
  the tissue they replace, added by `tools/make_demo_volumes.py`; `{lesion}_mask.nii.gz` is their mask. For the demo
  only: never use it to benchmark a method.
- `manifest.csv`: the demo's split ({train} train, {healthy} validation normal, the synthetic lesion test).
"""


def add_lesion(vol: np.ndarray, center: tuple[int, int, int], radii: tuple[int, int, int], gain: float):
    """``vol`` with a smooth ellipsoid at ``center`` (brighter for ``gain > 0``); returns (new volume, binary mask)."""
    grid = np.indices(vol.shape).astype(np.float32)
    d2 = sum(((grid[i] - center[i]) / radii[i]) ** 2 for i in range(3))
    profile = np.clip(1.0 - d2, 0.0, 1.0) ** 0.5  # 1 in the centre, 0 at the ellipsoid's surface
    local = float(np.median(vol[d2 <= 1.0]))
    out = vol.astype(np.float32) + gain * local * profile
    # the mask marks the voxels the lesion visibly changes (by at least MASK_MIN_CHANGE of the local median): at the
    # ellipsoid's surface the profile is 0, and a voxel left unchanged must not make its slice count as a lesion
    return out, (abs(gain) * profile >= MASK_MIN_CHANGE).astype(np.uint8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, default=Path("../shared/data/ixi_t1_2mm_sample"))
    p.add_argument("--dst", type=Path, default=Path("monai_anomaly/sample_data/volumes"))
    p.add_argument("--gain", type=float, default=0.8)
    args = p.parse_args()
    args.dst.mkdir(parents=True, exist_ok=True)
    for name in (TRAIN, HEALTHY):
        # RAS voxel order, cropped to the axial slabs of the brain above the skull base (the neck and face are
        # left out, as in skull-stripped research data); the affine follows the crop
        canon = nib.as_closest_canonical(nib.load(args.src / "volumes" / f"{name}.nii.gz"))
        nib.save(canon.slicer[:, :, Z_RANGE[0] : Z_RANGE[1]], args.dst / f"{name}.nii.gz")
    img = nib.load(args.dst / f"{HEALTHY}.nii.gz")
    vol = img.get_fdata(dtype=np.float32)  # the files are uint8 with a scale factor
    lesioned, mask = vol, np.zeros(vol.shape, dtype=np.uint8)
    for (x, y, z), radii, gain in LESIONS:
        lesioned, m = add_lesion(lesioned, (x, y, z - Z_RANGE[0]), radii, gain * args.gain)
        mask |= m
    out = nib.Nifti1Image(lesioned, img.affine, img.header)  # nibabel rescales into the header's uint8
    nib.save(out, args.dst / f"{LESION}.nii.gz")
    nib.save(nib.Nifti1Image(mask, img.affine), args.dst / f"{LESION}_mask.nii.gz")
    with open(args.dst / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "volume_id", "split", "mask"])
        w.writerow([f"{TRAIN}.nii.gz", 0, TRAIN, "train", ""])
        w.writerow([f"{HEALTHY}.nii.gz", 0, HEALTHY, "val", ""])
        w.writerow([f"{LESION}.nii.gz", 1, LESION, "test", f"{LESION}_mask.nii.gz"])
    (args.dst / "README.md").write_text(
        README.format(
            train=TRAIN,
            healthy=HEALTHY,
            lesion=LESION,
            z0=Z_RANGE[0],
            z1=Z_RANGE[1],
            up=max(g for *_, g in LESIONS) * args.gain,
            down=-min(g for *_, g in LESIONS) * args.gain,
        )
    )
    print(f"wrote {args.dst}: {len(LESIONS)} lesions, {int(mask.sum())} voxels")


if __name__ == "__main__":
    main()
