from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distill.errors import RecipeError
from distill.recipe import load_recipe
from tests.conftest import REPO, write_recipe

MINIMAL = "name: demo\ningest:\n  paths: [docs]\n"


def test_minimal_recipe_gets_defaults(tmp_path: Path) -> None:
    r = load_recipe(write_recipe(tmp_path, MINIMAL))
    assert r.name == "demo"
    assert r.train.backend == "auto"
    assert r.teacher.model.startswith("local:") and r.teacher.options == {}
    assert r.student == "smollm2-135m-instruct" and r.split.eval_fraction == 0.2
    assert r.base_dir == tmp_path
    assert r.run_path == Path("runs/demo")


def test_quickstart_recipe_is_valid() -> None:
    r = load_recipe(REPO / "recipes" / "quickstart.yaml")
    assert r.name == "quickstart"
    assert "ft+rag" in r.eval.systems


def test_unknown_key_names_path_and_known_keys(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, MINIMAL + "train:\n  epochz: 3\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    (problem,) = e.value.problems
    assert problem.startswith("train.epochz: unknown key")
    assert "epochs" in problem and "lora_r" in problem
    assert str(path) in str(e.value)


def test_wrong_type_and_range_each_get_a_line(tmp_path: Path) -> None:
    body = MINIMAL + "train:\n  epochs: many\n  lora_r: 0\nsplit:\n  eval_fraction: 1.5\n"
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(tmp_path, body))
    keys = sorted(p.split(":")[0] for p in e.value.problems)
    assert keys == ["split.eval_fraction", "train.epochs", "train.lora_r"]
    assert any("'many'" in p for p in e.value.problems)


def test_missing_required_fields(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(tmp_path, "ingest: {}\n"))
    assert sorted(p.split(":")[0] for p in e.value.problems) == ["ingest", "name"]
    assert any("give at least one of paths and datasets" in p for p in e.value.problems)


def test_overlap_must_be_smaller_than_chunk(tmp_path: Path) -> None:
    body = MINIMAL + "  chunk_tokens: 64\n  chunk_overlap: 64\n"
    with pytest.raises(RecipeError, match="chunk_overlap must be smaller"):
        load_recipe(write_recipe(tmp_path, body))


def test_set_overrides_parse_values_as_yaml(tmp_path: Path) -> None:
    r = load_recipe(
        write_recipe(tmp_path, MINIMAL),
        ["train.epochs=1", "eval.systems=[base, ft]", "generate.max_chunks=5", "name=other"],
    )
    assert r.train.epochs == 1.0
    assert r.eval.systems == ["base", "ft"]
    assert r.generate.max_chunks == 5
    assert r.name == "other"


def test_set_override_errors(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, MINIMAL)
    with pytest.raises(RecipeError, match="expected KEY.PATH=VALUE"):
        load_recipe(path, ["train.epochs"])
    with pytest.raises(RecipeError, match="--set name.x: .name. is not a section"):
        load_recipe(path, ["name.x=1"])
    with pytest.raises(RecipeError, match="train.nope: unknown key"):
        load_recipe(path, ["train.nope=1"])
    with pytest.raises(RecipeError, match="the value is not valid YAML.*quote it"):
        load_recipe(path, ["eval.off_topic=[Is it free?]"])


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="line 3: not valid YAML"):
        load_recipe(write_recipe(tmp_path, "name: x\ningest: [\n"))
    with pytest.raises(RecipeError, match="file not found"):
        load_recipe(tmp_path / "absent.yaml")
    with pytest.raises(RecipeError, match="top level must be a mapping"):
        load_recipe(write_recipe(tmp_path, "- a\n- b\n"))


def test_cli_validate_prints_one_line_per_problem_without_traceback(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "name: bad name\ningest:\n  chunk_tokens: 0\n  extra: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "distill", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 3
    assert all(str(path) in ln for ln in lines)
    assert any("ingest.extra: unknown key" in ln for ln in lines)


def test_cli_validate_good_recipe_prints_resolved(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()  # validate checks that ingest.paths match files
    (tmp_path / "docs" / "a.md").write_text("# A\n\nSome text.\n")
    proc = subprocess.run(
        [sys.executable, "-m", "distill", "validate", str(write_recipe(tmp_path, MINIMAL)),
         "--set", "train.lora_r=4"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "lora_r: 4" in proc.stdout


def test_teacher_student_and_split_at_the_top(tmp_path: Path) -> None:
    body = MINIMAL + (
        "teacher: {model: 'openai:gpt-4o-mini', options: {concurrency: 2},"
        " price: {input: 1, output: 2}}\n"
        "student: qwen2.5-coder-0.5b-instruct\n"
        "split: {eval_fraction: 0.3, min_eval_documents: 2, seed: 4, seen_eval_fraction: 0}\n"
        "review: {exports: [openai]}\n"
    )
    r = load_recipe(write_recipe(tmp_path, body))
    assert r.teacher.model == "openai:gpt-4o-mini" and r.teacher.options == {"concurrency": 2}
    assert r.teacher.price is not None and r.teacher.price.output == 2
    assert r.student == "qwen2.5-coder-0.5b-instruct"
    assert (r.split.eval_fraction, r.split.min_eval_documents, r.split.seed) == (0.3, 2, 4)
    assert r.split.seen_eval_fraction == 0 and r.review.exports == ["openai"]
    # The teacher's judge and price follow it (eval's judge and DPO's pair judge).
    assert r.judge_of(None, None) == ("openai:gpt-4o-mini", {"concurrency": 2})
    assert r.price_of("openai:gpt-4o-mini") == r.teacher.price


def test_a_teacher_string_is_its_model_and_set_reaches_into_it(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, MINIMAL + "teacher: 'fake:'\n")
    assert load_recipe(path).teacher.model == "fake:"
    r = load_recipe(path, ["teacher.options.concurrency=3"])
    assert (r.teacher.model, r.teacher.options) == ("fake:", {"concurrency": 3})
    # --set teacher=... replaces the whole teacher: options for another backend go.
    withopts = write_recipe(tmp_path, MINIMAL + "teacher: {model: 'fake:', options: {a: 1}}\n")
    r = load_recipe(withopts, ["teacher=openai:m"])
    assert (r.teacher.model, r.teacher.options) == ("openai:m", {})
    assert load_recipe(withopts, ["teacher.model=openai:m"]).teacher.options == {"a": 1}


# An old key, as a recipe wrote it -> the line that says where it went.
MOVED_IN_FILE = {
    "train: {student: qwen}": "train.student moved: write `student: qwen` at the top of the recipe",
    "generate: {teacher: 'local:qwen'}": (
        "generate.teacher moved: write `teacher: local:qwen` at the top of the recipe"
    ),
    "generate: {teacher: 'openai:m', teacher_options: {concurrency: 2}}": (
        "generate.teacher: openai:m, generate.teacher_options moved: write `teacher: {model: "
        "'openai:m', options: {concurrency: 2}}` at the top of the recipe"
    ),
    "generate: {price: {input: 1, output: 2}}": (
        "generate.price moved: write `teacher: {model: 'PROVIDER:MODEL', price: {input: 1, "
        "output: 2}}` at the top of the recipe"
    ),
    "curate: {eval_fraction: 0.3}": (
        "curate.eval_fraction moved: write `split: {eval_fraction: 0.3}` at the top of the recipe"
    ),
    "curate: {min_eval_documents: 2}": "curate.min_eval_documents moved: write `split: {",
    "curate: {seed: 3}": "curate.seed moved: write `split: {seed: 3}` at the top of the recipe",
    "curate: {seen_eval_fraction: 0}": "curate.seen_eval_fraction moved: write `split: {",
    "curate: {exports: [openai]}": "curate.exports moved: write `exports: [openai]` under review",
    "train: {gkd: {teacher_options: {base_url: 'http://h/v1'}}}": (
        "train.gkd.teacher_options moved: write `served_teacher: {model: 'openai:MODEL', "
        "options: {base_url: 'http://h/v1'}}` under train.gkd"
    ),
    "train: {method: gkd, gkd: {teacher: 'openai:big'}}": (
        "train.gkd.teacher: openai:big moved: write `served_teacher: {model: 'openai:big', "
        "options: {base_url: URL}}` under train.gkd"
    ),
    "train: {method: gkd, gkd: {teacher: 'openai:big', teacher_options: {top_k: 5}}}": (
        "train.gkd.teacher: openai:big, train.gkd.teacher_options moved: write "
        "`served_teacher: {model: 'openai:big', options: {top_k: 5}}` under train.gkd"
    ),
}


@pytest.mark.parametrize(("text", "line"), list(MOVED_IN_FILE.items()))
def test_a_moved_key_fails_with_one_line_naming_its_place(
    text: str, line: str, tmp_path: Path
) -> None:
    path = write_recipe(tmp_path, MINIMAL + text + "\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    (problem,) = e.value.problems
    assert problem.startswith(line) and "\n" not in problem


# An old key given with --set -> the --set to write instead.
MOVED_BY_SET = {
    "train.student=qwen": "--set student=qwen",
    "generate.teacher=local:qwen": "--set teacher=local:qwen",
    "generate.teacher_options.concurrency=2": "--set teacher.options.concurrency=2",
    "generate.price={input: 1, output: 2}": "--set teacher.price={input: 1, output: 2}",
    "curate.eval_fraction=0.3": "--set split.eval_fraction=0.3",
    "curate.min_eval_documents=2": "--set split.min_eval_documents=2",
    "curate.seed=3": "--set split.seed=3",
    "curate.seen_eval_fraction=0": "--set split.seen_eval_fraction=0",
    "curate.exports=[openai]": "--set review.exports=[openai]",
    "train.gkd.teacher_options.top_k=5": "--set train.gkd.served_teacher.options.top_k=5",
    "train.gkd.teacher=openai:big": "--set train.gkd.served_teacher.model=openai:big",
}


@pytest.mark.parametrize(("item", "instead"), list(MOVED_BY_SET.items()))
def test_a_moved_key_given_by_set_fails_with_the_set_to_write(
    item: str, instead: str, tmp_path: Path
) -> None:
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(tmp_path, MINIMAL), [item])
    (problem,) = e.value.problems
    key = item.partition("=")[0]
    assert problem.startswith(f"--set {key}") and instead in problem and "\n" not in problem


def test_the_cli_prints_a_moved_key_as_one_error_line(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, MINIMAL + "train: {student: qwen}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "distill", "validate", str(path), "--set", "curate.seed=1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert (
        len(lines) == 2 and "train.student moved" in lines[0] and "--set split.seed=1" in lines[1]
    )


@pytest.mark.parametrize(
    "key", ["student", "ingest.embedding_model", "ingest.tokenizer", "eval.similarity_model",
            "retrieval.rerank_model", "train.gkd.teacher"],
)  # fmt: skip
def test_local_and_bare_references_are_the_same_model(key: str, tmp_path: Path) -> None:
    from distill.recipe import Recipe

    path = write_recipe(tmp_path, MINIMAL)

    def value(r: Recipe) -> object:
        node: object = r
        for part in key.split("."):
            node = getattr(node, part)
        return node

    bare = load_recipe(path, [f"{key}=qwen2.5-coder-0.5b-instruct"])
    local = load_recipe(path, [f"{key}=local:qwen2.5-coder-0.5b-instruct"])
    assert value(bare) == value(local) == "qwen2.5-coder-0.5b-instruct"
    assert bare.model_dump() == local.model_dump()  # the same fingerprints, cards and manifest
    with pytest.raises(RecipeError, match="runs here: write local:MODEL or MODEL"):
        load_recipe(path, [f"{key}=anthropic:claude-x"])


def test_local_and_bare_references_resolve_to_the_same_files(tmp_path: Path) -> None:
    from distill.models import resolve_causal_lm

    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    path = write_recipe(tmp_path, MINIMAL)
    bare = resolve_causal_lm(load_recipe(path, [f"student={folder}"]).student)
    local = resolve_causal_lm(load_recipe(path, [f"student=local:{folder}"]).student)
    assert bare == local and local.path == str(folder.resolve())


def test_a_served_gkd_teacher_is_its_own_field(tmp_path: Path) -> None:
    served = (
        "train: {method: gkd, gkd: {served_teacher: {model: 'openai:big', "
        "options: {base_url: 'http://127.0.0.1:8080/v1'}}}}\n"
    )
    r = load_recipe(write_recipe(tmp_path, MINIMAL + served))
    assert r.train.gkd.served_teacher is not None and r.train.gkd.teacher is None
    assert r.train.gkd.served_teacher.model == "openai:big"
    assert r.train.gkd.served_teacher.options.logprobs == "echo"
    bad = served.replace("openai:big", "local:big")
    with pytest.raises(RecipeError, match="a served teacher is openai:MODEL"):
        load_recipe(write_recipe(tmp_path, MINIMAL + bad))
    both = served.replace("{served_teacher", "{teacher: qwen, served_teacher")
    with pytest.raises(RecipeError, match="give teacher .loaded here. or served_teacher"):
        load_recipe(write_recipe(tmp_path, MINIMAL + both))


def test_a_named_system_is_given_as_the_teacher_is_with_rag_and_a_margin(tmp_path: Path) -> None:
    body = MINIMAL + (
        "eval:\n  systems:\n    - ft+rag\n    - incumbent: openai:ft:gpt-4o-mini:acme::xyz\n"
        "    - grounded:\n        model: openai:old\n        rag: true\n        margin: 0.05\n"
        "        options: {base_url: 'http://localhost:8000/v1'}\n"
        "        price: {input: 0.3, output: 1.2}\n"
    )
    e = load_recipe(write_recipe(tmp_path, body)).eval
    assert e.system_names == ["ft+rag", "incumbent", "grounded"]
    incumbent, grounded = e.named_systems["incumbent"], e.named_systems["grounded"]
    assert incumbent.model == "openai:ft:gpt-4o-mini:acme::xyz" and not incumbent.rag
    assert incumbent.margin == 0.10 and incumbent.price is None and incumbent.options == {}
    assert grounded.rag and grounded.margin == 0.05 and grounded.price is not None
    assert grounded.options == {"base_url": "http://localhost:8000/v1"}
    # Retrieval follows `rag`, not the name; the built-in ones keep theirs.
    assert e.retrieval_systems == {"teacher", "base+rag", "ft+rag", "grounded"}
    # The dump is the recipe's shape again (the manifest, the stage fingerprints).
    again = load_recipe(
        write_recipe(tmp_path, MINIMAL), [f"eval.systems={json.dumps(e.model_dump()['systems'])}"]
    )
    assert again.eval == e


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("ft+ragg", "'ft+ragg' is not a system: write one of teacher, base, base+rag, ft, ft+rag, "
         "or NAME: SPEC"),
        ("{old+rag: 'openai:x'}", "'old+rag' cannot name a system: use a word"),
        ("{Teacher: 'openai:x'}", "'Teacher' cannot name a system"),
        ("{a: 'openai:x', b: 'openai:y'}", "a, b: write one NAME: SPEC per entry"),
        ("{a: {rag: true}}", "eval.systems.1.spec.a.model: Field required"),
        ("{a: {model: 'openai:x', ragg: true}}", "eval.systems.1.spec.a.ragg: unknown key"),
        ("{a: {model: 'openai:x', margin: 2}}", "eval.systems.1.spec.a.margin: Input should be"),
    ],
)  # fmt: skip
def test_a_bad_named_system_is_one_line(entry: str, said: str, tmp_path: Path) -> None:
    path = write_recipe(tmp_path, MINIMAL + f"eval:\n  systems: [ft+rag, {entry}]\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    (problem,) = e.value.problems
    assert said in problem and "\n" not in problem


def test_two_systems_cannot_share_a_name(tmp_path: Path) -> None:
    body = MINIMAL + "eval:\n  systems: [{a: 'openai:x'}, {a: 'openai:y'}]\n"
    with pytest.raises(RecipeError, match="'a' names two systems: give each its own name"):
        load_recipe(write_recipe(tmp_path, body))
