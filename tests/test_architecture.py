"""The layering docs/ARCHITECTURE.md draws, checked on the source: a stage
package never imports another stage package, the shared layer (core modules and
teachers/) imports no stage package except for the stages' config models, and the
product code patches nothing with unittest.mock."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "distill"
STAGES = ("ingest", "generate", "curate", "review", "train", "evaluate", "publish")
# The core modules that drive the stages (the CLI and the pipeline call them; the
# preflight, doctor and init look at what they will need).
DRIVERS = {"cli", "pipeline", "preflight", "doctor", "scaffold"}


def modules() -> dict[str, set[str]]:
    """Module name -> every distill module it imports (anywhere in the file)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        if "assets" in path.parts:
            continue
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                if node.module == "distill":  # from distill import tables
                    found |= {f"distill.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        out[name] = {m for m in found if m == "distill" or m.startswith("distill.")}
    return out


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _drives(module: str) -> bool:
    return module.split(".")[1] in DRIVERS if module != "distill" else False


def test_no_stage_imports_another() -> None:
    wrong = [
        f"{m} imports {dep}"
        for m, deps in modules().items()
        if (own := stage_of(m))
        for dep in deps
        if (other := stage_of(dep)) and other != own
    ]
    assert wrong == []


def test_the_shared_layer_imports_stages_only_for_their_configs() -> None:
    wrong = [
        f"{m} imports {dep}"
        for m, deps in modules().items()
        if stage_of(m) is None and not _drives(m)
        for dep in deps
        if stage_of(dep) and not dep.endswith(".config")
    ]
    assert wrong == []


def test_no_unittest_mock_in_product_code() -> None:
    users = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "unittest.mock" in text or "from unittest import mock" in text:
            users.append(str(path.relative_to(PACKAGE.parent)))
    assert users == []


def test_paths_between_stages_are_named_once() -> None:
    """What one stage writes and another reads is a read-only path of `RunFolder`
    (`folder.curated("eval")`, `folder.adapter_dir`, ...), not a string assembled where it
    is read: no module but runfolder.py joins a stage folder with a file name."""
    import re

    joined = re.compile(r'(stage_dir\("\w+"\)|\.root) / "[\w.]+"')
    allowed = {"runfolder.py", "calibration.py"}  # calibration/ is review's own, read by it
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if path.name not in allowed
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if joined.search(line)
    ]
    assert wrong == []
