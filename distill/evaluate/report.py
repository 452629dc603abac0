"""The eval report: the decision table as Markdown and self-contained HTML, with the
plots (distill.evaluate.plots) inlined and side-by-side examples."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill import eval_text
from distill.decision_text import decision_markdown, discordant_markdown
from distill.eval_text import COLUMNS, DASH, cells, comparison_table, decision_table, pct
from distill.evaluate.plots import plots
from distill.io import write_text
from distill.recipe import Recipe
from distill.results import EvalMetrics, PairedComparison
from distill.tables import Answer


def _notes(recipe: Recipe | None, metrics: EvalMetrics) -> list[str]:
    un = metrics.unanswerable
    judge = metrics.judge
    notes = [
        f"Questions: {metrics.questions} held-out questions from documents never trained "
        f"on, plus {un.no_oracle} asked again with their source documents removed from "
        f"retrieval and {un.off_topic} off-topic ones (right answer: the documents do not "
        "say); those go to the systems with retrieval only.",
        f"Retrieval: top {metrics.k} chunks; the question's source chunk was among them for "
        f"{pct(metrics.retrieval_hit_rate)} of questions.",
        f"Judge: `{judge}`"
        + (" (the teacher)" if judge == metrics.teacher else "")
        + ". Correctness is graded 1-5 against the reference answer (the teacher's answer "
        "written from the source chunk); groundedness 1-5 against the retrieved chunks. "
        "Head to head, each student answer is compared with the teacher's twice, in both "
        "orders; it wins or loses only when both orders agree, otherwise it is a tie.",
        f"Failures count: {metrics.judge_failures} of {metrics.judge_calls} judgements "
        "failed or could not be parsed; "
        "an answer without a judgement counts as not ≥ 4 and not a win. Means are over the "
        "judged answers.",
        "Citation accuracy: of the answers that cite documents ([n]), the share citing the "
        "source chunk and no document that does not exist. Refusal accuracy: of the "
        "unanswerable questions, the share answered with 'the documents do not contain it' "
        "(detected by phrase).",
        f"Latency: wall time per answer on {metrics.hardware}, the search included for "
        "systems with retrieval; "
        + (
            "the local models run through llama.cpp, one question at a time"
            + (f" (weights: {metrics.student_weights})." if metrics.student_weights else ".")
            if metrics.student_engine == "llama.cpp"
            else f"a local model answers {metrics.batch_size} questions at a time, so each "
            "of those answers waits for its batch."
        )
        + " Tokens/s is output tokens over compute time.",
        "Cost: API systems at the provider's list prices; local systems cost compute only "
        "(time on this machine, priced when `eval.hardware_cost_per_hour` is set). "
        f"The judge cost ${metrics.judge_cost_usd:.2f} on top.",
        "Intervals: 95% percentile bootstrap over questions "
        f"({metrics.bootstrap.resamples} resamples, seeded); a "
        "comparison resamples the same questions for both systems (paired), and claims a "
        "gain or a loss only when its interval excludes 0. Token F1 (word overlap with the "
        "reference) and embedding similarity need no judge.",
    ]
    if recipe is not None and recipe.teacher.model == f"local:{recipe.student}":
        notes.append(
            "The teacher is the untrained student model itself, so `teacher` and `base+rag` "
            "answer the same prompts with the same weights."
        )
    return notes


def _decision_lines(metrics: EvalMetrics) -> list[str]:
    d = metrics.decision
    if d is None:
        return []
    lines = decision_markdown(d)
    key = metrics.answer_key
    if key:
        skipped = ", ".join(f"{n} {why}" for why, n in key.skipped.items()) or "none"
        lines += [
            "",
            f"Answer key: `{key.file}`, {key.answerable} answerable and "
            f"{key.unanswerable} verified unanswerable questions kept; skipped: {skipped}.",
        ]
    lines += _judge_lines(metrics)
    return [*lines, "", *discordant_markdown(d)]


def _judge_lines(metrics: EvalMetrics) -> list[str]:
    """What the judge is worth: its agreement with the key and its built-in checks."""
    if not metrics.judge:
        return ["", "The judge is off (`eval.judge_items: 0`): the verdict is judge-free."]
    lines = ["", "## The judge, measured", ""]
    agreement = metrics.judge_agreement
    if agreement:
        ci = agreement.kappa_ci95
        lines.append(
            f"- Against the key-fact check on {agreement.n} answers both scored: agreement "
            f"{agreement.agreement:.0%}, Cohen's kappa "
            + (
                "undefined (one class only)"
                if agreement.kappa is None
                else f"{agreement.kappa:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
            )
            + "."
        )
    for kind, what in (
        ("identity", "its own reference graded as the answer, not graded correct "
         "(false negatives)"),
        ("foil", "another question's reference graded as the answer, not graded wrong "
         "(false positives)"),
    ):  # fmt: skip
        c = metrics.judge_checks.get(kind)
        if c is not None and c.ci is not None:  # some checks were graded (n > 0)
            lines.append(
                f"- {kind.capitalize()} check: {c.missed} of {c.n} {what}: "
                f"{c.rate:.0%} [{c.ci[0]:.0%}, {c.ci[1]:.0%}]"
                + (f"; {c.failed} checks failed" if c.failed else "")
                + "."
            )
    if metrics.judge_same_family:
        lines.append(
            f"- Warning: the judge (`{metrics.judge}`) is of the teacher's family "
            f"(`{metrics.teacher}`); it may prefer answers written like the teacher's. "
            "Set `eval.judge` to another family."
        )
    return lines


def render_markdown(
    metrics: EvalMetrics, rows: Sequence[Answer], recipe: Recipe | None, examples: int
) -> str:
    lines = ["# Evaluation report", "", *_decision_lines(metrics)]
    lines += eval_text.traffic_markdown(metrics.traffic)
    if not metrics.questions and not metrics.unanswerable.no_oracle:
        return "\n".join(lines)  # no generated questions: the answer key is the report
    lines += [
        "## Generated questions, judged (descriptive)"
        if metrics.decision
        else "## What this means",
        "",
        " ".join(metrics.what_this_means_judged),
        "",
        "## Decision table",
        "",
    ]
    lines += [
        f"Unseen documents: {metrics.questions} questions on documents no training row "
        "contains (behaviour and grounding).",
        "",
        decision_table(metrics.systems),
    ]
    if metrics.comparisons:
        lines += [
            "",
            "### Deciding comparisons (paired)",
            "",
            comparison_table(metrics.comparisons),
        ]
    seen = metrics.seen
    if seen:
        lines += [
            "",
            f"## Seen documents: {seen.questions} held-out questions on training documents",
            "",
            "Knowledge absorbed: new questions (decontaminated against the training "
            "questions) about documents the student trained on. Compare `ft` with `base`.",
            "",
            decision_table(seen.systems),
        ]
        if seen.comparisons:
            lines += ["", comparison_table(seen.comparisons)]
    lines += [
        "",
        "![quality by system](quality.png)",
        "",
        "![quality against latency and cost](tradeoff.png)",
        "",
        "## How these were measured",
        "",
    ]
    lines += [f"- {n}" for n in _notes(recipe, metrics)]
    lines += [
        "",
        "## Details",
        "",
        "| system | n | answer failures | similarity | support | "
        "cites | false refusals | compute per 1k | cost basis |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in metrics.systems.items():
        lines.append(
            f"| {name} | {m.n} | {m.answer_failures} | "
            f"{_num(m.similarity)} | {_num(m.support)} | "
            f"{pct(m.citations.citing) if m.citations else 'n/a'} | "
            f"{pct(m.refusal.false_refusals) if m.refusal else 'n/a'} | "
            f"{_num(m.compute_s_per_1k, '.0f')} s | {m.cost_basis} |"
        )
    lines += ["", f"## Examples ({min(examples, metrics.questions)} held-out questions)", ""]
    for ex in side_by_side(rows, examples):
        lines += [f"### {_md(ex['question'])}", "", f"- **reference**: {_md(ex['reference'])}"]
        for a in ex["answers"]:
            lines.append(f"- **{a['system']}** ({a['score']}): {_md(a['answer'])}")
        lines.append("")
    return "\n".join(lines)


def _num(x: float | None, fmt: str = ".2f") -> str:
    return DASH if x is None else format(x, fmt)


def _md(text: str) -> str:
    """Untrusted text on one Markdown line: no HTML, no line breaks."""
    return html.escape(" ".join(text.split())) or "(empty)"


def side_by_side(rows: Sequence[Answer], n: int) -> list[dict[str, Any]]:
    ids = list(dict.fromkeys(r["item_id"] for r in rows if r["kind"] == "answerable"))[:n]
    out = []
    for item_id in ids:
        mine = [r for r in rows if r["item_id"] == item_id]
        out.append(
            {
                "question": mine[0]["question"],
                "reference": mine[0]["reference"],
                "answers": [
                    {
                        "system": r["system"],
                        "answer": r["answer"] if not r["answer_error"] else "(failed)",
                        "score": _score_words(r),
                    }
                    for r in mine
                ],
            }
        )
    return out


def _score_words(r: Answer) -> str:
    parts = [
        f"correctness {r['correctness']}/5"
        if r["correctness"] is not None
        else "correctness not judged"
    ]
    if r["vs_teacher"] is not None:
        parts.append(f"vs teacher: {r['vs_teacher']}")
    return ", ".join(parts)


def _code(text: str) -> str:
    """Escaped text with `spans` as <code> (our own sentences, not documents)."""
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", html.escape(text, quote=False))


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} img{max-width:100%} .ex{margin-bottom:1.5em}
.ex td:first-child{white-space:nowrap;font-weight:600}
.verdict{border:2px solid #4c72b0;background:#f4f7fb;padding:.2em 1em;margin:1em 0}
"""


def render_html(
    metrics: EvalMetrics,
    rows: Sequence[Answer],
    recipe: Recipe | None,
    examples: int,
    images: dict[str, bytes],
) -> str:
    """One file, no outside resources: the plots are inlined as data URIs."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>distill evaluation report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Evaluation report</h1>",
        _markdown_html(_decision_lines(metrics) + eval_text.traffic_markdown(metrics.traffic)),
    ]
    if not metrics.questions and not metrics.unanswerable.no_oracle:
        return "\n".join([*parts, "</body></html>"])
    parts += [
        "<h2>Generated questions, judged (descriptive)</h2>"
        if metrics.decision
        else "<h2>What this means</h2>",
        f"<p id='what-this-means'>{_code(' '.join(metrics.what_this_means_judged))}</p>",
        "<h2>Decision table</h2>",
        "<table id='decision-table'><thead><tr>",
        *(f"<th data-col='{k}'>{e(h)}</th>" for k, h in COLUMNS),
        "</tr></thead><tbody>",
    ]
    for name, m in metrics.systems.items():
        row = cells(name, m)
        parts.append("<tr>" + "".join(f"<td data-col='{k}'>{e(row[k])}</td>" for k, _ in COLUMNS))
        parts.append("</tr>")
    parts.append("</tbody></table>")
    if metrics.comparisons:
        parts += ["<h3>Deciding comparisons (paired)</h3>", _html_table(metrics.comparisons)]
    seen = metrics.seen
    if seen:
        parts.append(
            f"<h2>Seen documents: {seen.questions} held-out questions on training "
            "documents</h2><p>Knowledge absorbed: compare <code>ft</code> with "
            "<code>base</code>.</p><table id='seen-table'><thead><tr>"
        )
        parts += [f"<th>{e(h)}</th>" for _, h in COLUMNS]
        parts.append("</tr></thead><tbody>")
        for name, m in seen.systems.items():
            row = cells(name, m)
            parts.append("<tr>" + "".join(f"<td>{e(row[k])}</td>" for k, _ in COLUMNS) + "</tr>")
        parts.append("</tbody></table>")
        if seen.comparisons:
            parts.append(_html_table(seen.comparisons))
    for name, data in images.items():
        uri = "data:image/png;base64," + base64.b64encode(data).decode()
        parts.append(f"<p><img alt='{e(name)}' src='{uri}'></p>")
    parts += ["<h2>How these were measured</h2><ul>"]
    parts += [f"<li>{_code(n)}</li>" for n in _notes(recipe, metrics)]
    parts += ["</ul>", "<h2>Examples</h2>"]
    for ex in side_by_side(rows, examples):
        parts.append(f"<div class='ex'><h3>{e(ex['question'])}</h3><table>")
        parts.append(f"<tr><td>reference</td><td>{e(ex['reference'])}</td><td></td></tr>")
        for a in ex["answers"]:
            parts.append(
                f"<tr><td>{e(a['system'])}</td><td>{e(a['answer'])}</td>"
                f"<td>{e(a['score'])}</td></tr>"
            )
        parts.append("</table></div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _inline(text: str) -> str:
    """Our own Markdown line as HTML: escaped once, `code` and **bold** kept."""
    out = _code(html.unescape(text))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


def _markdown_html(lines: list[str]) -> str:
    """The decision's Markdown (headings, tables, lists, the verdict box) as HTML."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, body = table[0], table[2:]
            out.append(
                "<table><thead><tr>"
                + "".join(f"<th>{_inline(c)}</th>" for c in head)
                + "</tr></thead><tbody>"
                + "".join(
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body
                )
                + "</tbody></table>"
            )
            table.clear()

    quote: list[str] = []
    for ln in [*lines, ""]:
        if ln.startswith("|"):
            table.append([c.strip() for c in ln.strip().strip("|").split(" | ")])
            continue
        flush()
        if ln.startswith("> "):
            quote.append(f"<p>{_inline(ln[2:])}</p>")
            continue
        if quote:
            out.append("<div id='verdict' class='verdict'>" + "".join(quote) + "</div>")
            quote.clear()
        if ln.startswith("### "):
            out.append(f"<h3>{_inline(ln[4:])}</h3>")
        elif ln.startswith("## "):
            out.append(f"<h2>{_inline(ln[3:])}</h2>")
        elif ln.lstrip().startswith("- "):
            out.append(f"<li>{_inline(ln.lstrip()[2:])}</li>")
        elif ln.strip():
            out.append(f"<p>{_inline(ln)}</p>")
    return "\n".join(out)


def _html_table(comparisons: list[PairedComparison]) -> str:
    """The comparison table (rendered from its Markdown form: one source of truth)."""
    rows = [ln.strip("|").split(" | ") for ln in comparison_table(comparisons).splitlines()]
    head, body = rows[0], rows[2:]
    e = html.escape
    return (
        "<table class='comparisons'><thead><tr>"
        + "".join(f"<th>{e(h.strip())}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join("<tr>" + "".join(f"<td>{e(c.strip())}</td>" for c in r) + "</tr>" for r in body)
        + "</tbody></table>"
    )


def write_report(out: Path, recipe: Recipe, metrics: EvalMetrics, rows: Sequence[Answer]) -> None:
    images = plots(out, metrics)
    n = recipe.eval.examples
    write_text(out / "report.md", render_markdown(metrics, rows, recipe, n))
    write_text(out / "report.html", render_html(metrics, rows, recipe, n, images))
