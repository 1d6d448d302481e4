"""The package's layers import downwards only (docs/architecture.md): scoring and metrics are pure code any layer may
use, and nothing low reaches up (a network never imports a handler, data never imports a transform)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "monai_anomaly"

LAYERS = {
    "utils": 0,
    "version": 0,
    "scoring": 1,
    "metrics": 1,
    "data": 2,
    "transforms": 3,
    "networks": 4,
    "losses": 4,
    "inferers": 5,
    "reports": 6,
    "engines": 7,
    "handlers": 7,
    "apps": 8,
    "cli": 9,
    "__main__": 9,
}


def _imports(path: Path) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("monai_anomaly."):
            out.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("monai_anomaly.")]
    return out


def test_every_layer_is_listed_and_imports_point_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        top = rel.parts[0].removesuffix(".py")
        if top in ("__init__", "sample_data"):
            continue
        assert top in LAYERS, f"{rel}: add its layer to docs/architecture.md and LAYERS"
        for module, line in _imports(path):
            target = module.split(".")[1]
            assert target in LAYERS, f"{rel}:{line} imports {module}, a layer not in LAYERS"
            if LAYERS[target] > LAYERS[top]:
                upward.append(f"{rel}:{line} ({top}) imports {module} ({target})")
    assert not upward, "imports that point up:\n" + "\n".join(upward)
