"""Calibration's figures, no I/O: which eval answers to put before the reviewers
(stratified by the judge's grade and the key-fact check, paired across the two deciding
systems, seeded), and what their labels say about the judge and the key-fact check
(kappa, agreement, the deciding pair's paired difference). distill.review.calibration
pushes and pulls them."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from distill.agreement import agreement
from distill.io import hash_json

VERDICTS = {"correct": "Correct", "partial": "Partial", "wrong": "Wrong"}
WORSE_FIRST = ("wrong", "partial", "correct")  # a tie between reviewers goes to the worse


def judge_pass(r: dict[str, Any]) -> bool | None:
    """The judge's "correct" (grade >= 4); None outside its sample. A judged answer whose
    grade failed is not correct: a failure is never a pass."""
    if not r["judged"]:
        return None
    return r["correctness"] is not None and r["correctness"] >= 4


def strata(r: dict[str, Any]) -> tuple[str, str]:
    j = judge_pass(r)
    fact = r["fact_correct"]
    return (
        "not_judged" if j is None else "correct" if j else "not_correct",
        "no_key_facts" if fact is None else "states_facts" if fact else "misses_facts",
    )


def _eligible(r: dict[str, Any], systems: Sequence[str]) -> bool:
    return r["kind"] == "answerable" and not r["answer_error"] and r["system"] in systems


def _quotas(sizes: Counter[tuple[str, str]], k: int, rng: random.Random) -> dict[Any, int]:
    """k spread as evenly over the strata as their sizes allow (one at a time, round robin)."""
    quota = dict.fromkeys(sizes, 0)
    order = sorted(sizes)
    rng.shuffle(order)  # which strata get the remainder
    while k > 0 and any(quota[c] < sizes[c] for c in order):
        for c in order:
            if k > 0 and quota[c] < sizes[c]:
                quota[c] += 1
                k -= 1
    return quota


def select(
    answers: list[dict[str, Any]], systems: tuple[str, str], n: int, seed: int
) -> list[dict[str, Any]]:
    """The answers to calibrate on: up to n//2 per system (the first gets an odd one),
    spread evenly over strata, both systems' answers to one item where possible."""
    a, b = systems
    Item = tuple[str, str]  # (eval_set, item_id): one question
    pool: dict[str, dict[Item, dict[str, Any]]] = {a: {}, b: {}}
    for r in sorted(answers, key=lambda r: (r["eval_set"], r["item_id"], r["system"])):
        if _eligible(r, systems):
            pool[r["system"]].setdefault((r["eval_set"], r["item_id"]), r)
    want = {a: min((n + 1) // 2, len(pool[a])), b: min(n // 2, len(pool[b]))}
    # The same seeded order of strata for both systems: the same strata get the
    # remainder, so pairs can fill them.
    quota = {
        s: _quotas(Counter(strata(r) for r in pool[s].values()), want[s], random.Random(seed))
        for s in pool
    }
    rng = random.Random(hash_json(["calibration", seed]))
    tiebreak = {i: rng.random() for i in sorted(set(pool[a]) | set(pool[b]))}
    picked: dict[str, dict[Item, dict[str, Any]]] = {a: {}, b: {}}
    count: dict[str, Counter[tuple[str, str]]] = {a: Counter(), b: Counter()}

    def need(s: str, item: Item) -> int:
        cell = strata(pool[s][item])
        return max(0, quota[s][cell] - count[s][cell])

    def take(s: str, item: Item) -> None:
        picked[s][item] = pool[s][item]
        count[s][strata(pool[s][item])] += 1

    # Pairs first, while each of the two answers fills a stratum its system still needs.
    pairs = sorted(set(pool[a]) & set(pool[b]), key=tiebreak.__getitem__)
    while len(picked[a]) < want[a] and len(picked[b]) < want[b]:
        open_ = [i for i in pairs if i not in picked[a] and need(a, i) and need(b, i)]
        if not open_:
            break
        best = max(open_, key=lambda i: (need(a, i) + need(b, i), -tiebreak[i]))
        take(a, best)
        take(b, best)
    # Then single answers: a needed stratum first, then one that completes a pair.
    for s, other in ((a, b), (b, a)):
        while len(picked[s]) < want[s]:
            rest = [i for i in pool[s] if i not in picked[s]]
            take(s, max(rest, key=lambda i: (need(s, i) > 0, i in picked[other], -tiebreak[i])))
    return [r for s in systems for r in picked[s].values()]


def human_label(responses: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One record's label from its submitted responses (None: none yet). Several
    reviewers: the most common verdict, a tie going to the worse; the reference is
    flagged when anyone flags it."""
    done = [r for r in responses if r["status"] == "submitted" and r["values"].get("verdict")]
    if not done:
        return None
    votes = Counter(str(r["values"]["verdict"]) for r in done)
    top = max(votes.values())
    return {
        "verdict": next(v for v in WORSE_FIRST if votes[v] == top),
        "reference_wrong": any(r["values"].get("reference_wrong") == "yes" for r in done),
        "reviewers": len(done),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _share(xs: list[bool]) -> float:
    return sum(xs) / len(xs)


def summarize(
    keys: list[dict[str, Any]],
    labels: dict[str, dict[str, Any] | None],
    systems: tuple[str, str],
    seed: int,
) -> dict[str, Any]:
    """What the reviewers' labels say about the judge and the key-fact check."""
    done = [(k, lab) for k in keys if (lab := labels.get(k["record_id"]))]
    human = {k["record_id"]: lab["verdict"] == "correct" for k, lab in done}
    judged = [k for k in keys if k["judged"]]
    judge_pairs = [(bool(judge_pass(k)), human[k["record_id"]]) for k, _ in done if k["judged"]]
    if not judged:
        judge: dict[str, Any] = {"status": "not run"}  # eval.judge_items 0, or outside its sample
    elif all(k["correctness"] is None for k in judged):
        judge = {"status": "failed", "judged": len(judged)}  # no grade came back at all
    else:
        judge = {
            "status": "ok" if judge_pairs else "no labels yet",
            **agreement(judge_pairs, seed),
            "failed_grades": sum(k["judged"] and k["correctness"] is None for k, _ in done),
        }
    fact_pairs = [
        (bool(k["fact_correct"]), human[k["record_id"]])
        for k, _ in done
        if k["fact_correct"] is not None
    ]
    if all(k["fact_correct"] is None for k in keys):
        facts: dict[str, Any] = {"status": "not run"}  # no answer-key items in the sample
    else:
        facts = {"status": "ok" if fact_pairs else "no labels yet", **agreement(fact_pairs, seed)}
    verdicts = Counter(lab["verdict"] for _, lab in done)
    flagged = sum(lab["reference_wrong"] for _, lab in done)
    return {
        "systems": list(systems),
        "records": len(keys),
        "labelled": len(done),
        "unlabelled": len(keys) - len(done),
        "verdicts": {v: verdicts[v] for v in VERDICTS},
        "reference_wrong": flagged,
        "reference_wrong_share": _r(flagged / len(done)) if done else None,
        "judge": judge,
        "key_facts": facts,
        "paired": _paired(done, human, systems, judge["status"] == "ok"),
        "labels": [
            {
                "record_id": k["record_id"],
                "item_id": k["item_id"],
                "system": k["system"],
                "human": lab["verdict"],
                "reference_wrong": lab["reference_wrong"],
                "judge_correctness": k["correctness"] if k["judged"] else None,
                "fact_correct": k["fact_correct"],
            }
            for k, lab in done
        ],
    }


def _paired(
    done: list[tuple[dict[str, Any], dict[str, Any]]],
    human: dict[str, bool],
    systems: tuple[str, str],
    judge_ran: bool,
) -> dict[str, Any]:
    """system_a - system_b in share correct on the items both answers of which are
    labelled (and graded, when the judge ran): judge, humans and key facts on the same
    items (the key-fact check on those of them with key facts)."""
    a, b = systems
    by_item: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for k, _ in done:
        by_item.setdefault((k["eval_set"], k["item_id"]), {})[k["system"]] = k
    pairs = [
        (d[a], d[b])
        for _, d in sorted(by_item.items())
        if a in d and b in d and (not judge_ran or (d[a]["judged"] and d[b]["judged"]))
    ]

    def diff(of: Any, among: list[tuple[dict[str, Any], dict[str, Any]]]) -> float | None:
        if not among:
            return None
        return _r(_share([of(x) for x, _ in among]) - _share([of(y) for _, y in among]))

    with_facts = [(x, y) for x, y in pairs if None not in (x["fact_correct"], y["fact_correct"])]
    return {
        "items": len(pairs),
        "judge": diff(judge_pass, pairs) if judge_ran else None,
        "humans": diff(lambda k: human[k["record_id"]], pairs),
        "key_facts": diff(lambda k: k["fact_correct"], with_facts),
        "key_facts_items": len(with_facts),
    }


def _agree_line(name: str, m: dict[str, Any]) -> str:
    if m["status"] == "not run":
        return f"{name}: not run on these answers (no grades to compare)"
    if m["status"] == "failed":
        return f"{name}: every grade failed ({m['judged']} answers): nothing to compare"
    if m["status"] == "no labels yet":
        return f"{name}: no labelled records with a value yet"
    kappa = "undefined (one class only)" if m["kappa"] is None else f"{m['kappa']:.2f}"
    if m["kappa_ci95"]:
        kappa += f" [95% {m['kappa_ci95'][0]:.2f}, {m['kappa_ci95'][1]:.2f}]"
    failed = m.get("failed_grades")
    tail = f" (failed grades counted as not correct: {failed})" if failed else ""
    return f"{name}: kappa {kappa}, agreement {m['agreement']:.0%} on {m['n']} records{tail}"


def render(s: dict[str, Any]) -> str:
    """The pull's summary, a few lines for the terminal."""
    pts = lambda x: "n/a" if x is None else f"{x * 100:+.0f} pts"  # noqa: E731
    v, p = s["verdicts"], s["paired"]
    lines = [
        f"calibration ('{s['dataset']}'): {s['labelled']} of {s['records']} records labelled, "
        f"{s['unlabelled']} not yet" + (f" ({s['discarded']} discarded)" if s["discarded"] else ""),
    ]
    if s["labelled"]:
        lines.append(
            f"  humans: {v['correct']} correct, {v['partial']} partial, {v['wrong']} wrong; "
            f"reference wrong: {s['reference_wrong']} ({s['reference_wrong_share']:.0%})"
        )
    lines.append("  " + _agree_line("judge (grade >= 4) vs humans (correct)", s["judge"]))
    lines.append("  " + _agree_line("key-fact check vs humans (correct)", s["key_facts"]))
    a, b = s["systems"]
    judge = "judge not run" if s["judge"]["status"] != "ok" else f"judge {pts(p['judge'])}"
    lines.append(
        f"  {a} - {b}, share correct, on {p['items']} items both labelled: {judge}, "
        f"humans {pts(p['humans'])}, key-fact check {pts(p['key_facts'])}"
        + (f" (on {p['key_facts_items']})" if p["key_facts_items"] != p["items"] else "")
    )
    return "\n".join(lines)
