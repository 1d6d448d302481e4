"""Every case of the bad-input corpus (tests/bad_input_corpus.py), run through the CLI in a subprocess.

Each failing case must exit with its status, print no traceback, name the file and the problem, and leave no output
behind; the awkward-but-valid cases must succeed. Cases run two at a time (the machine has two cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bad_input_corpus import Case, marker_path, run_cases, snapshot, write_corpus  # noqa: E402

_REPO = Path(__file__).resolve().parents[1]


def run_cli(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(_REPO), **(env or {})}
    e.pop("MONAI_ANOMALY_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "monai_anomaly", *argv], capture_output=True, text=True, env=e, timeout=timeout
    )


@pytest.fixture(scope="module")
def corpus_results(tiny_trained_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    cases = write_corpus(root, tiny_trained_bundle / "models" / "model.pt")
    before = {c.name: snapshot(Path(c.check.split(":", 1)[1])) for c in cases if c.check.startswith("intact:")}
    results = run_cases(cases, root / "_runner")
    return {
        c.name: (c, subprocess.CompletedProcess(c.argv, r["code"], r["stdout"], r["stderr"]), before.get(c.name), root)
        for c, r in ((c, results[c.name]) for c in cases)
    }


def _case_names() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return [c.name for c in write_corpus(Path(d), Path(d) / "model.pt")]


@pytest.mark.parametrize("name", _case_names())
def test_bad_input_case(corpus_results, name):
    case, res, before, root = corpus_results[name]
    case: Case
    both = res.stdout + res.stderr
    assert res.returncode == case.code, f"{case.argv}\nexit {res.returncode}\n{both[-3000:]}"
    assert "Traceback (most recent call last)" not in both, both[-3000:]
    for p in case.absent:
        assert not p.exists(), f"{p} was left behind"
    if case.code != 0:
        err = res.stderr.strip().splitlines()
        assert 1 <= len(err) <= 3 and err[0].startswith("monai_anomaly: error: "), res.stderr
        if case.names:
            assert case.names in err[0], err[0]
        assert case.phrase.lower() in err[0].lower(), err[0]
    out = Path(case.argv[case.argv.index("--output_dir") + 1])
    if case.check.startswith("skipped:"):
        report = json.loads((out / "scores.json").read_text())
        assert [Path(s["path"]).name for s in report["skipped"]] == [case.check.split(":", 1)[1]]
        assert case.names in res.stdout + res.stderr  # named in a warning too
        assert len(report["scans"]) == 3  # the good files were still scored
    elif case.check.startswith("scans:"):
        report = json.loads((out / "scores.json").read_text())
        assert len(report["scans"]) == int(case.check.split(":")[1])
        assert report["scans"][0]["scored_slices"]
    elif case.check == "trained":
        assert (out / "models" / "model.pt").is_file()
        assert case.names in both  # the skipped file is named in the log
    elif case.check == "kept":
        assert (out / "scores.json").read_text() == "{}"  # the earlier result is untouched
    elif case.check == "model_kept":
        assert (out / "models" / "model.pt").is_file()  # the earlier model is untouched
    elif case.check == "no_planted_code":
        assert not marker_path(root).exists(), "a setting read from a checkpoint ran as code"
    elif case.check.startswith("intact:"):
        assert snapshot(Path(case.check.split(":", 1)[1])) == before, "a file of another tool was changed or deleted"
    elif case.check.startswith("unique:"):
        report = json.loads((out / "scores.json").read_text())
        ids = [s["volume_id"] for s in report["scans"]]
        assert len(ids) == len(set(ids)) == int(case.check.split(":")[1]), ids
        maps = sorted((out / "maps").glob("*_anomaly_map.nii.gz"))
        assert len(maps) == len(ids), maps
        rows = (out / "volume_results.csv").read_text().strip().splitlines()[1:]
        assert len(rows) == len(ids)
    elif case.check.startswith("each_once:"):
        n_good, n_bad = map(int, case.check.split(":")[1:])
        report = json.loads((out / "scores.json").read_text())
        ids = [s["volume_id"] for s in report["scans"]]
        assert sorted(ids) == sorted(set(ids)) and len(ids) == n_good, ids
        skipped = [Path(s["path"]).name for s in report["skipped"]]
        assert len(skipped) == len(set(skipped)) == n_bad, skipped
    elif case.check.startswith("report:"):
        ev = Path(case.check.split(":", 1)[1])
        assert (ev / "detailed_results.csv").is_file() and (ev / "metrics.json").is_file()
        assert "\\x" in (ev / "detailed_results.csv").read_text(encoding="utf-8")  # the odd names, escaped


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    res = run_cli(["infer", str(tmp_path / "zero.png"), "--output_dir", str(tmp_path / "o"), "--debug"])
    assert res.returncode == 1 and "Traceback (most recent call last)" in res.stderr


def test_help_lists_the_commands_and_names_the_files_they_write():
    res = run_cli(["--help"])  # fire writes help to stdout on a terminal, to stderr otherwise
    assert res.returncode == 0
    for cmd in ("train", "evaluate", "infer", "demo", "audit", "bundles", "config"):
        assert f"\n     {cmd}\n" in res.stdout + res.stderr, res.stdout + res.stderr
    res = run_cli(["infer", "--help"])
    infer = res.stdout + res.stderr
    assert "detailed_results.csv" in infer and "volume_results.csv" in infer and "slice_scores.csv" not in infer
    res = run_cli(["train", "--help"])
    train = res.stdout + res.stderr
    assert "models/model.pt" in train and "eval/" not in train.split("POSITIONAL ARGUMENTS")[0]  # train writes no eval/
