"""A tiny anomaly bundle for the MONAI Label app tests: network, postprocessing and the files to write it.

Used until (and besides) the real ``bundles/autoencoder_anomaly``: the app must serve any bundle with this contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.networks.nets import AutoEncoder
from torch import nn

__all__ = [
    "ReconstructionErrorNet",
    "add_result",
    "write_mock_bundle",
    "write_nifti",
    "write_dicom_series",
    "write_png",
]


class ReconstructionErrorNet(nn.Module):
    """A tiny 2D MONAI AutoEncoder whose forward gives the anomaly map ``|x - recon|``."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.ae = AutoEncoder(
            spatial_dims=2, in_channels=1, out_channels=1, channels=(channels, channels), strides=(2, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.ae(x)).abs()


def add_result(d: dict[str, Any], threshold: float = 0.5) -> dict[str, Any]:
    """Mock postprocessing: slice scores (mean over each axial slice), volume score (max) and the prediction."""
    m = torch.as_tensor(d["anomaly_map"]).float()
    slices = [m[0]] if m.ndim == 3 else list(m[0].movedim(-1, 0))
    scores = [float(s.mean()) for s in slices]
    vs = max(scores)
    d["result"] = {
        "volume_score": vs,
        "slice_scores": scores,
        "threshold": threshold,
        "prediction": "anomalous" if vs >= threshold else "normal",
    }
    return d


def write_mock_bundle(root: Path, threshold: float = 0.5, train_steps: int = 5) -> Path:
    """Write ``root/mock_anomaly`` (configs/inference.json, metadata.json, models/model.pt), briefly trained."""
    bundle = root / "mock_anomaly"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    config = {
        "imports": ["$import anomaly_mock_bundle"],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "network_def": {"_target_": "anomaly_mock_bundle.ReconstructionErrorNet", "channels": 4},
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "monai_anomaly.transforms.io.LoadScand", "keys": "image", "orient": "RAS"},
                {"_target_": "ScaleIntensityd", "keys": "image"},
            ],
        },
        "inferer": {
            "_target_": "monai_anomaly.inferers.slice.AnomalySliceInferer",
            "spatial_size": 16,
            "spatial_dim": 2,
            "sw_batch_size": 4,
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Lambdad", "keys": "anomaly_map", "func": "$lambda m: m"},
                {"_target_": "Lambda", "func": f"$lambda d: anomaly_mock_bundle.add_result(d, {threshold})"},
            ],
        },
    }
    (bundle / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    meta = {"version": "0.0.1", "description": "mock anomaly bundle for tests"}
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    torch.manual_seed(0)
    net = ReconstructionErrorNet(4)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.rand(8, 1, 16, 16)
    for _ in range(train_steps):
        opt.zero_grad()
        net(x).mean().backward()
        opt.step()
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    return bundle


def write_nifti(path: Path, shape: tuple[int, ...] = (20, 18, 5), affine: np.ndarray | None = None) -> Path:
    """A float32 NIfTI with a blob; the default affine is LPS-like (so the app must orient the map back)."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    arr = rng.random(shape).astype(np.float32)
    arr[tuple(slice(s // 4, s // 2) for s in shape[:3])] += 3.0
    if affine is None:
        affine = np.array([[-1.5, 0, 0, 30.0], [0, -1.2, 0, 20.0], [0, 0, 3.0, -10.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return path


def write_dicom_series(folder: Path, rows: int = 16, cols: int = 20, n: int = 4) -> Path:
    """A minimal, valid MR DICOM series (one file per slice) in ``folder``."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(1)
    for i in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"slice{i:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = "MR", "anon", "anon"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber = 1, i + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, -8.0, 2.5 * i]
        ds.PixelSpacing, ds.SliceThickness = [0.9, 0.8], 2.5
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = (rng.random((rows, cols)) * 1000).astype(np.uint16).tobytes()
        if int(pydicom.__version__.split(".")[0]) < 3:  # pydicom 2 wants the encoding on the dataset
            ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(folder / f"slice{i:03d}.dcm"), write_like_original=False)
    return folder


def write_png(path: Path, shape: tuple[int, int] = (20, 24)) -> Path:
    """An 8-bit grey PNG of ``shape`` (rows, columns)."""
    from PIL import Image

    arr = (np.random.default_rng(2).random(shape) * 255).astype(np.uint8)
    Image.fromarray(arr, mode="L").save(path)
    return path
