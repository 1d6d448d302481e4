"""monai_anomaly: unsupervised anomaly detection in medical images, built on MONAI."""

from __future__ import annotations

import logging as _logging
import warnings as _warnings

from monai_anomaly.utils.version import __version__  # noqa: E402

# MONAI registers an optional GPU DICOM decoder on every LoadImage and says, several times per run, that it is not
# installed; nothing a user can act on (the pydicom / SimpleITK readers are used), so those notices are muted.
_logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(_logging.ERROR)
_warnings.filterwarnings("ignore", message=r"NvImgCodecPydicomReader", category=UserWarning)

from monai_anomaly.utils.config import print_config  # noqa: E402

__all__ = ["__version__", "print_config"]
