"""Tests for monai_anomaly.utils.outputs: output folders that are provably ours (marker, lock, the overwrite rule)."""

from __future__ import annotations

import json
import os
import socket

import pytest


def test_overwrite_deletes_only_the_files_the_marker_lists(tmp_path):
    """A folder of ours that the user also put a file into: --overwrite removes our files and keeps theirs."""
    from monai_anomaly.utils.outputs import INFER, claim_output, read_marker

    out = tmp_path / "out"
    with claim_output(out, INFER) as claim:
        assert (out / ".monai_anomaly").is_file() and (out / ".monai_anomaly.lock").is_file()
        (claim.path / "maps").mkdir()
        (claim.path / "maps" / "a_anomaly_map.nii.gz").write_bytes(b"map")
        (claim.path / "scores.json").write_text("{}")
    marker = read_marker(out)
    assert marker["complete"] and marker["files"] == ["maps/a_anomaly_map.nii.gz", "scores.json"]
    assert not (out / ".monai_anomaly.lock").exists()
    (out / "my_notes.txt").write_text("mine")
    (out / "maps" / "my_drawing.png").write_bytes(b"png")  # in our maps/ folder, but not listed
    with pytest.raises(FileExistsError, match="holds an earlier inference result; pass --overwrite"):
        claim_output(out, INFER)
    claim_output(out, INFER, overwrite=True).finish()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        ".monai_anomaly",
        "maps/my_drawing.png",
        "my_notes.txt",
    ]


def test_a_killed_run_is_recognised_by_its_marker(tmp_path):
    """The marker is written before anything else: a run killed mid-way leaves a folder we can still replace."""
    from monai_anomaly.utils.outputs import INFER, claim_output

    out = tmp_path / "out"
    claim = claim_output(out, INFER)
    (out / "maps").mkdir()
    (out / "maps" / "a_anomaly_map.nii.gz").write_bytes(b"half")
    claim.release()  # what SIGKILL leaves: no file list, complete=false (the lock is stale then)
    with pytest.raises(FileExistsError, match="did not finish"):
        claim_output(out, INFER)
    with claim_output(out, INFER, overwrite=True):
        assert not (out / "maps").exists()


def test_legacy_results_are_recognised_by_their_full_set_of_files(tmp_path):
    from monai_anomaly.utils.outputs import INFER, OutputNotOursError, claim_output

    old = tmp_path / "old"
    old.mkdir()
    for f in ("scores.json", "detailed_results.csv", "volume_results.csv", "anomaly_report.txt", "metrics.json"):
        (old / f).write_text("x")
    with claim_output(old, INFER, overwrite=True):
        assert sorted(os.listdir(old)) == [".monai_anomaly", ".monai_anomaly.lock"]
    one_name = tmp_path / "one_name"
    one_name.mkdir()
    (one_name / "metrics.json").write_text("another tool's")
    with pytest.raises(OutputNotOursError):
        claim_output(one_name, INFER, overwrite=True)
    assert (one_name / "metrics.json").read_text() == "another tool's"


def test_a_live_lock_refuses_and_a_stale_one_is_cleaned(tmp_path):
    from monai_anomaly.utils.outputs import INFER, OutputInUseError, claim_output

    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".monai_anomaly.lock"
    lock.write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "command": "infer", "date": "now"}))
    with pytest.raises(OutputInUseError, match=r"in use by another monai_anomaly run \(pid 1, infer"):
        claim_output(out, INFER)
    assert json.loads(lock.read_text())["pid"] == 1  # someone else's lock is left alone
    lock.write_text(json.dumps({"pid": 2**22 + 4321, "host": socket.gethostname()}))  # no such process
    with claim_output(out, INFER):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_owned_files_judges_sub_results_by_their_own_marker(tmp_path):
    from monai_anomaly.utils.outputs import DEMO, EVALUATE, claim_output, owned_files

    run = tmp_path / "demo"
    with claim_output(run, DEMO):
        (run / "models").mkdir()
        (run / "models" / "model.pt").write_bytes(b"m")
        with claim_output(run / "eval", EVALUATE):
            (run / "eval" / "metrics.json").write_text("{}")
    (run / "eval" / "mine.txt").write_text("user")
    ours, foreign = owned_files(run, DEMO)
    assert ours == ["eval/metrics.json", "models/model.pt"] and foreign == ["eval/mine.txt"]


def test_files_of_another_tool_under_our_names_are_never_overwritten(tmp_path):
    """A folder of ours holding the user's own metrics.json: --overwrite would write over it, so it is refused."""
    from monai_anomaly.reports.writer import write_report
    from monai_anomaly.utils.outputs import INFER, OutputNotOursError, claim_output

    out = tmp_path / "out"
    with claim_output(out, INFER):
        (out / "scores.json").write_text("{}")
    (out / "metrics.json").write_text("the user's own")
    with pytest.raises(OutputNotOursError, match="metrics.json.*would be overwritten"):
        claim_output(out, INFER, overwrite=True)
    # the bundle door (no CLI claim): overwrite=True does not replace a report file it has no record of
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.json").write_text("another tool's")
    rows = [{"path": "a.png", "volume_id": "a", "slice_index": 0, "label": 0, "score": 0.1}]
    with pytest.raises(OutputNotOursError, match="metrics.json not written by monai_anomaly"):
        write_report(str(other), rows, overwrite=True)
    assert (out / "metrics.json").read_text() == "the user's own"
    assert (other / "metrics.json").read_text() == "another tool's"
