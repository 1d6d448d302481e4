"""``benchmarks/run_all.py``: the same command gives the same AUROCs, and it writes the benchmark page from them."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


RUN_ALL = _module(REPO / "benchmarks" / "run_all.py", "_monai_anomaly_run_all")
CONF = _module(REPO / "tests" / "conftest.py", "_monai_anomaly_tests_conftest_ra")


def _scores(run_dir: Path) -> list[tuple[str, str]]:
    with open(run_dir / "eval" / "detailed_results.csv", newline="") as f:
        return [(r["path"], r["score"]) for r in csv.DictReader(f)]


def test_same_command_same_aurocs_and_the_page_is_written_from_them(tmp_path):
    data = CONF.make_tiny_sample(tmp_path / "tiny_set")
    common = ["--datasets", str(data), "--methods", "autoencoder", "supervised", "--tiny", "--no-quality"]
    first = RUN_ALL.main([*common, "--out", str(tmp_path / "a"), "--no-docs"])
    docs = tmp_path / "docs" / "benchmarks.md"
    second = RUN_ALL.main([*common, "--out", str(tmp_path / "b"), "--docs", str(docs)])

    def aurocs(summary):
        return {r["method"]: r["slice"]["auroc"] for r in summary["results"]}

    assert set(aurocs(first)) == {"autoencoder", "supervised"}
    assert all(0.0 <= v <= 1.0 for v in aurocs(first).values())
    assert aurocs(first) == aurocs(second)  # bit-identical, not approximately
    for method in ("autoencoder", "supervised"):  # every slice score, not only the summary
        assert _scores(tmp_path / "a" / f"tiny_set__{method}") == _scores(tmp_path / "b" / f"tiny_set__{method}")

    text = docs.read_text()
    assert text.startswith("# Benchmarks")
    for method, auc in aurocs(second).items():
        assert f"| {method} |" in text and f"{auc:.3f}" in text
    assert (docs.parent / "images" / "benchmarks_auroc_vs_time.png").stat().st_size > 1000
    # the page can be rewritten from the saved results alone
    again = tmp_path / "again.md"
    RUN_ALL.main(["--from-results", str(tmp_path / "b" / "results.json"), "--docs", str(again)])
    assert again.read_text().split("## tiny_set")[1] == text.split("## tiny_set")[1]
