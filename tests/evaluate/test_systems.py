"""Eval's systems built from the recipe, answering against the loopback OpenAI server: a
named system (NAME: SPEC) with and without retrieval, cached like the teacher, priced
at its own price; no model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.errors import UserError
from distill.evaluate import metrics as em
from distill.evaluate.items import Item
from distill.evaluate.stage import _answer_all
from distill.evaluate.systems import System, make_systems
from distill.prompts import load_templates
from distill.recipe import Recipe, load_recipe
from distill.runfolder import RunFolder
from distill.tables import Answer, Chunk
from distill.teachers.cache import RequestCache
from tests.conftest import write_recipe
from tests.fakes.openai_server import serve

CHUNK: Chunk = {
    "chunk_id": "plans#0",
    "doc_id": "plans",
    "source": "plans.md",
    "title": "Plans",
    "heading_path": "Plans > Trials",
    "text": "Free trials last 14 days and need no credit card.",
    "n_tokens": 12,
    "position": 0,
}
ITEMS = [
    Item("q1", "answerable", "How long do free trials last?", "14 days", ["plans#0"], [CHUNK]),
    Item("q1-no-oracle", "no_oracle", "How long do free trials last?", "", ["plans#0"], []),
]


def reply(body: dict[str, object]) -> str:
    """The fact, cited when a document is in the prompt; a refusal with none."""
    prompt = str(body["messages"][-1]["content"])  # type: ignore[index]
    if "<document" not in prompt and "grounded" in str(body["model"]):
        return "The documents do not contain the answer."
    return "Trials last 14 days [1]." if "<document" in prompt else "Trials last 14 days."


def recipe_with(tmp_path: Path, url: str, systems: str) -> Recipe:
    opts = f"{{base_url: '{url}', api_key_env: DISTILL_TEST_KEY, ramp_s: 0}}"
    return load_recipe(
        write_recipe(
            tmp_path,
            "name: small\ningest:\n  paths: [docs]\n"
            f"eval:\n  systems: {systems.replace('OPTS', opts)}\n",
        )
    )


def answer_all(recipe: Recipe, tmp_path: Path) -> tuple[list[System], list[Answer]]:
    """make_systems and the stage's answering, with the eval's request cache."""
    template = load_templates(recipe).answer
    cache = RequestCache(tmp_path / "eval" / "cache.sqlite")
    try:
        systems = make_systems(recipe, RunFolder(tmp_path / "run"), cache, template.sha)
        return systems, _answer_all(recipe, systems, ITEMS, template)
    finally:
        cache.close()


def test_a_named_system_answers_with_or_without_retrieval_and_is_paid_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILL_TEST_KEY", "test-key-" + "z" * 24)
    with serve() as (server, url):
        server.reply = reply
        recipe = recipe_with(
            tmp_path,
            url,
            "[{incumbent: {model: 'openai:ft:gpt-4o-mini:acme::xyz', options: OPTS, "
            "price: {input: 300, output: 1200}}}, "
            "{grounded: {model: 'openai:grounded-old', options: OPTS, rag: true}}]",
        )
        systems, rows = answer_all(recipe, tmp_path)
        first = list(server.requests)
        again, rows_again = answer_all(recipe, tmp_path)
        assert len(server.requests) == len(first)  # the rerun is served from the cache

    assert [(s.name, s.rag, s.named, s.local) for s in systems] == [
        ("incumbent", False, True, False),
        ("grounded", True, True, False),
    ]
    prompts: dict[str, list[str]] = {}
    for r in first:
        prompts.setdefault(r["model"], []).append(r["messages"][-1]["content"])
    (alone,) = prompts["ft:gpt-4o-mini:acme::xyz"]
    assert "<document" not in alone and alone.rstrip().endswith("How long do free trials last?")
    # With retrieval: the chunk in the answerable question's prompt, none in its twin's.
    assert sorted(CHUNK["text"] in p for p in prompts["grounded-old"]) == [False, True]
    # The one without retrieval answers the answerable question only; the other also
    # the question whose documents were removed (a refusal is right there).
    asked = {(r["system"], r["item_id"]) for r in rows}
    assert asked == {("incumbent", "q1"), ("grounded", "q1"), ("grounded", "q1-no-oracle")}
    row = {(r["system"], r["item_id"]): r for r in rows}
    assert row["grounded", "q1"]["retrieved_chunk_ids"] == ["plans#0"]
    assert row["grounded", "q1"]["cited_chunk_ids"] == ["plans#0"]
    assert row["grounded", "q1-no-oracle"]["refused"]
    assert (
        row["incumbent", "q1"]["retrieved_chunk_ids"] == []
        and row["incumbent", "q1"]["cited"] == []
    )
    # Its own price: 11 prompt and 7 completion tokens at $300 / $1,200 per million.
    assert row["incumbent", "q1"]["cost_usd"] == pytest.approx((11 * 300 + 7 * 1200) / 1e6)
    assert row["incumbent", "q1"]["priced"] and not row["grounded", "q1"]["priced"]
    # The rerun: the same answers and costs, nothing spent.
    assert [(r["answer"], r["cost_usd"]) for r in rows_again] == [
        (r["answer"], r["cost_usd"]) for r in rows
    ]
    assert sum(s.model.spent_usd for s in again) == 0.0
    assert sum(s.model.spent_usd for s in systems) == pytest.approx(
        row["incumbent", "q1"]["cost_usd"]
    )

    # Metrics follow `rag`, not the name: refusals and citations for the grounded one.
    m = em.summarise(rows, ["incumbent", "grounded"], retrieval=recipe.eval.retrieval_systems)
    assert m["incumbent"].refusal is None and m["incumbent"].citations is None
    assert m["grounded"].refusal is not None and m["grounded"].refusal.accuracy == 1.0
    assert m["grounded"].citations is not None and m["grounded"].citations.accuracy == 1.0
    assert m["incumbent"].cost_basis == "API prices"
    assert m["incumbent"].cost_per_1k_usd == pytest.approx(11.7, abs=1e-3)
    assert m["grounded"].cost_per_1k_usd is None
    assert m["grounded"].cost_basis == "price unknown (give grounded a price)"


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("'nope:model'", "eval.systems incumbent: unknown teacher 'nope:model'"),
        ("{model: 'openai:x', options: {base_urll: 'http://x'}}", "base_urll"),
    ],
)
def test_a_spec_the_factory_refuses_is_one_line_naming_the_system(
    spec: str, said: str, tmp_path: Path
) -> None:
    recipe = recipe_with(tmp_path, "http://127.0.0.1:9/v1", f"[{{incumbent: {spec}}}]")
    with pytest.raises(UserError) as e:
        make_systems(recipe, RunFolder(tmp_path / "run"), RequestCache(tmp_path / "c.sqlite"), "")
    assert said in str(e.value) and str(e.value).startswith("eval.systems incumbent: ")
    assert "\n" not in str(e.value)


def test_the_built_in_systems_keep_retrieval_by_their_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILL_TEST_KEY", "test-key-" + "z" * 24)
    recipe = load_recipe(
        write_recipe(
            tmp_path,
            "name: small\ningest:\n  paths: [docs]\nteacher: 'fake:'\neval:\n"
            "  systems: [teacher, base, base+rag, ft, ft+rag, {named: 'fake:'}]\n"
            "  base_model: openai:base\n  ft_model: openai:ft\n"
            "  student_options: {base_url: 'http://127.0.0.1:9/v1',\n"
            "                    api_key_env: DISTILL_TEST_KEY}\n",
        )
    )
    cache = RequestCache(tmp_path / "c.sqlite")
    systems = make_systems(recipe, RunFolder(tmp_path / "run"), cache, "")
    cache.close()
    assert [(s.name, s.rag, s.named) for s in systems] == [
        ("teacher", True, False),
        ("base", False, False),
        ("base+rag", True, False),
        ("ft", False, False),
        ("ft+rag", True, False),
        ("named", False, True),
    ]
    assert [s.model.model for s in systems[1:5]] == ["base", "base", "ft", "ft"]
