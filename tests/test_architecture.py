"""The layering docs/ARCHITECTURE.md draws, checked on the source: a stage package never
imports another stage package, the shared layer (core modules and teachers/) imports no
stage package except for the stages' config models, and the product code patches nothing
with unittest.mock. And the tests a newcomer can find: every module of distill/ has its
test file at the mirrored path or says where it is tested. Kept flat: it reads the whole
package."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "distill"
STAGES = ("ingest", "generate", "curate", "review", "train", "evaluate", "publish")
# The core modules that drive the stages (the CLI and the pipeline call them; the
# preflight, doctor and init look at what they will need).
# `distill serve` drives eval's student (the same model, adapter and settings).
DRIVERS = {"cli", "pipeline", "preflight", "doctor", "scaffold", "serve"}


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


# Modules without a test file at the mirrored path (distill/x/y.py: tests/x/test_y.py,
# distill/y.py: tests/test_y.py), each with where it is tested instead.
EXEMPT = {
    "distill.agreement": "kappa in review/test_calibration.py, evaluate/test_metrics.py",
    "distill.assets": "package data found from the built wheel: integration/test_wheel.py",
    "distill.cli": "one-line errors: cli/test_commands.py, test_security.py",
    "distill.cli.app": "through the CLI: cli/test_commands.py",
    "distill.cli.publish": "through the CLI: cli/test_commands.py, integration/test_end_to_end.py",
    "distill.cli.review": "through the CLI: integration/test_review_loop.py, review/test_server.py",
    "distill.cli.serve": "through the CLI: serve/test_app.py, serve/test_students.py",
    "distill.config": "recipe models: test_recipe.py",
    "distill.curate.checks": "curate/test_stage.py, test_keyed_pairs.py",
    "distill.curate.config": "recipe model: test_recipe.py, curate/test_stage.py",
    "distill.curate.dedup": "near duplicates in curate/test_stage.py",
    "distill.curate.funnel": "curate/test_stage.py",
    "distill.curate.judge": "curate/test_stage.py, integration/test_teacher_runs.py",
    "distill.curate.report": "curate/test_stage.py",
    "distill.decision_text": "the decision's Markdown: evaluate/test_decision.py",
    "distill.distributed": "two processes in integration/test_end_to_end.py (slow)",
    "distill.errors": "exception classes, raised in every one-line-error test",
    "distill.eval_text": "evaluate/test_metrics.py, evaluate/test_decision.py",
    "distill.evaluate.compare": "`distill eval --compare`: evaluate/test_metrics.py",
    "distill.evaluate.config": "recipe model: test_recipe.py",
    "distill.evaluate.grading": "a scripted judge through the stage: evaluate/test_stage.py",
    "distill.evaluate.items": "generate/test_eval_key.py, generate/test_imported.py, "
    "evaluate/test_stage.py",
    "distill.evaluate.keyscore": "generate/test_eval_key.py, evaluate/test_stage.py",
    "distill.evaluate.plots": "the report's plots: evaluate/test_stage.py, test_atomic.py",
    "distill.evaluate.report": "evaluate/test_metrics.py",
    "distill.generate.config": "recipe model: test_recipe.py, generate/test_stage.py",
    "distill.generate.estimate": "generate/test_stage.py, integration/test_teacher_runs.py",
    "distill.generate.imported_samples": "your questions answered: generate/test_imported.py",
    "distill.generate.samples": "sample rows: generate/test_stage.py, test_control_tokens.py",
    "distill.generate.steps": "request sending and failure rows: generate/test_stage.py",
    "distill.gguf_cpu": "GGUF re-encoding for the CPU: teachers/test_llamacpp.py",
    "distill.ingest.config": "recipe model: test_recipe.py, ingest/test_discover.py",
    "distill.ingest.stage": "integration/test_ingest_real.py, ingest/test_hostile_input.py",
    "distill.publish.config": "recipe model: test_recipe.py, publish/test_cards.py",
    "distill.publish.stage": "integration/test_end_to_end.py, test_security.py",
    "distill.redact": "test_security.py, publish/test_secrets.py",
    "distill.results": "evaluate/test_metrics.py, evaluate/test_decision.py",
    "distill.review.argilla": "integration/test_review_loop.py, review/test_calibration.py",
    "distill.review.calibration_stats": "the pick and agreement: review/test_calibration.py",
    "distill.review.config": "recipe model: test_recipe.py, review/test_stage.py",
    "distill.review.exports": "curate/test_stage.py",
    "distill.review.records": "review/test_stage.py, integration/test_review_loop.py",
    "distill.review_gate": "review/test_stage.py, integration/test_review_loop.py",
    "distill.serve.assistant": "serve/test_app.py, serve/test_students.py",
    "distill.serve.wire": "through the SDK and on the wire: serve/test_app.py",
    "distill.teachers": "backends by prefix: teachers/test_base.py",
    "distill.teachers.fake": "the scripted teacher of most tests; teachers/test_base.py",
    "distill.teachers.judge": "teachers/test_llamacpp.py, train/test_preferences.py",
    "distill.teachers.prices": "teachers/test_engine.py, teachers/test_factory.py",
    "distill.train.common": "every pass (train/test_sft.py, test_dpo.py), train/test_lean.py",
    "distill.train.config": "recipe model: test_recipe.py, train/test_preferences.py",
    "distill.train.report": "train/test_sft.py, test_security.py",
    "distill.train.vocabulary": "train/test_served.py",
}
# Test files at the top of tests/ that test one property across several modules; each
# says why at its top.
CROSS_CUTTING = {
    "test_architecture.py",
    "test_atomic.py",
    "test_control_tokens.py",
    "test_keyed_pairs.py",
    "test_security.py",
}


def _testable() -> dict[str, Path]:
    """Module name -> its source, for every module that defines a function or class (a
    package's docstring or `__main__` has nothing of its own to test)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[:1] == ("assets",) and path.parent.name != "assets":
            continue  # the prompt templates and review kit, linked in
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(
            isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for n in tree.body
        ):
            name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def mirrored(path: Path) -> Path | None:
    """distill/x/y.py -> tests/x/test_y.py; a package's __init__.py has none."""
    rel = path.relative_to(PACKAGE)
    if rel.name == "__init__.py":
        return None
    return TESTS.joinpath(*rel.parent.parts, f"test_{rel.name}")


def test_every_module_has_its_test_file_or_says_where_it_is_tested() -> None:
    modules = _testable()
    missing = [
        f"{name}: no {test.relative_to(TESTS.parent) if test else 'test file'}; "
        "add one, or an EXEMPT entry saying where it is tested"
        for name, path in sorted(modules.items())
        if not ((test := mirrored(path)) and test.exists()) and name not in EXEMPT
    ]
    assert missing == []
    stale = [
        f"EXEMPT names {name}, which is gone or now has its test file"
        for name in sorted(EXEMPT)
        if name not in modules or ((test := mirrored(modules[name])) and test.exists())
    ]
    assert stale == []


def test_a_flat_test_file_tests_a_core_module_or_is_cross_cutting() -> None:
    wrong = [
        f"tests/{path.name}: no distill/{path.name.removeprefix('test_')}; move it beside its "
        "module's package or add it to CROSS_CUTTING with a line at its top saying why"
        for path in sorted(TESTS.glob("test_*.py"))
        if path.name not in CROSS_CUTTING
        and not (PACKAGE / path.name.removeprefix("test_")).exists()
    ]
    assert wrong == []


def test_no_private_name_crosses_a_module() -> None:
    """A name with a leading underscore is its module's own: no other distill module
    imports it (a helper two modules share is public, with a docstring)."""
    crossing = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("distill"):
                crossing += [
                    f"{path.relative_to(PACKAGE.parent)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert crossing == []
