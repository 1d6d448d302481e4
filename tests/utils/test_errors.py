from __future__ import annotations

import pickle

import pytest

from monai_anomaly.utils.errors import BadInputError, SkipLog


def test_bad_input_error_names_file_and_survives_pickling():
    err = BadInputError("/data/a.nii.gz", "contains 3 NaN voxels")
    assert str(err) == "/data/a.nii.gz: contains 3 NaN voxels"
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert again.path == err.path and again.problem == err.problem


def test_skip_log_raises_unless_skipping():
    with pytest.raises(BadInputError, match="x.png"):
        SkipLog(skip_bad=False).handle(BadInputError("x.png", "truncated"))
    log = SkipLog(skip_bad=True)
    log.handle(BadInputError("x.png", "truncated"))
    log.handle(BadInputError("y.dcm", "not DICOM"))
    assert len(log) == 2
    assert log.as_list()[1] == {"path": "y.dcm", "problem": "not DICOM"}
