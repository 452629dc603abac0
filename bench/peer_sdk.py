"""distill against meta-llama's synthetic-data-kit (sdk): one llama-cpp-python server, one
teacher (Qwen2.5-Coder-0.5B-Instruct Q4_K_M), the Brightdesk pages; usable pairs per
teacher-second and the share of pairs whose key fact is verbatim in the source.

    .venv/bin/python bench/peer_sdk.py [--out runs/peer_sdk] [--port 8766] [--md-only]
        [--distill-run FOLDER] [--lean] [--report-only] [--skip-sdk] [--name NAME]
        [--set KEY=VALUE ...]

1. Creates /work/sdk-venv if missing: `pip install synthetic-data-kit==0.0.5` (its tree
   has no torch or vllm; `datasets` brings pyarrow/pandas/numpy). `--lean` installs it
   --no-deps plus only what ingest/create import. No torch is ever installed.
2. Starts `python -m llama_cpp.server` from distill's venv on 127.0.0.1:PORT (n_ctx 4096,
   2 threads) on the GGUF `distill.models.resolve_gguf` assembles.
3. sdk: stages the pages flat (its directory scan is not recursive; ingest rejects .md,
   so each .md is copied as .txt, which its TXT parser reads verbatim; the .html and
   .pdf go through its bs4 / pdfminer parsers; --md-only leaves those two out), runs
   `synthetic-data-kit -c CFG ingest` then `create --type qa`. CFG is the package's own
   config.yaml with only: provider api-endpoint at the server, a dummy key, and
   generation.batch_size 1 (the server answers one request at a time; 32 concurrent
   requests would hit the client timeout). Its prompts, temperature 0.7, num_pairs 25,
   max_tokens 4096 (llama.cpp clips it to the context) stay. Teacher seconds = wall
   time of `create` (a summary call + one QA call per page; ingest is not timed).
4. distill: unless --distill-run names a finished run folder, runs
   `distill run recipes/quickstart.yaml --until curate` into OUT/distill_served with
   the teacher `openai:` at the same server (concurrency 1, timeout 600 s, structured
   json_object). Teacher seconds = manifest stages.generate.duration_s (the whole
   stage, so retrieval for RAFT contexts is charged to distill too).

Usable pair: stripped question non-empty and ending in '?', answer non-empty (same rule
for both; distill's `instructions` rows are imperatives and fail it).
Verbatim key fact (conservative, same function for both): every figure in the answer
(numbers and codes like E102, as `distill.keyfacts.figures` reads them) is one the
source states (`known_figures`), and
either the answer has at least one figure, or some 4 consecutive answer words with at
least 2 non-stopwords occur in the source (case, whitespace, Markdown * ` | ignored).
Source: sdk — the ingested page text the teacher saw (a page under chunk_size 4000 is
one chunk); distill — its source chunk(s) (source_chunk_ids), and as a second column
its whole source page(s), to compare like with like. distill's RAFT rows that expect a
refusal are usable but left out of the verbatim share (they have no fact).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
DOCS = REPO / "examples/brightdesk/docs"
SDK = "synthetic-data-kit==0.0.5"
TEACHER = "qwen2.5-coder-0.5b-instruct"
LEAN = "typer rich pyyaml openai requests beautifulsoup4 pdfminer.six flask flask-wtf pydantic"
# The package's own config.yaml (load_config reads one file, no merging), changed only
# where the docstring says; run by the sdk venv's python, which has yaml.
CONFIG = """import sys, yaml, importlib.resources as r
c = yaml.safe_load((r.files("synthetic_data_kit") / "config.yaml").read_text())
c["llm"]["provider"] = "api-endpoint"
c["api-endpoint"].update(api_base=f"http://127.0.0.1:{sys.argv[2]}/v1", api_key="none",
                         model=sys.argv[3])
c["generation"]["batch_size"] = 1
open(sys.argv[1], "w").write(yaml.safe_dump(c, sort_keys=False))
"""
STOP = set(
    "a an the of to in on for and or is are be it this that you your can with by at as"
    " from if not do does will was were which what how when".split()
)


def norm(text: str) -> str:
    return " ".join(re.sub(r"[*`|]", " ", text.lower()).split())


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9$%]+(?:['.:/-][a-z0-9]+)*", norm(text))


def verbatim_fact(answer: str, source: str) -> bool:
    # Figures as distill's own checks read them (curation's grounded numbers, eval's
    # "numbers in no retrieved chunk"): every one the answer states must be in the source.
    from distill.keyfacts import figures, known_figures

    figs = figures(answer)
    if not figs <= known_figures(source):
        return False
    if figs:
        return True
    sw, aw = words(source), words(answer)
    grams = {tuple(sw[i : i + 4]) for i in range(len(sw) - 3)}
    return any(
        tuple(aw[i : i + 4]) in grams and sum(w not in STOP for w in aw[i : i + 4]) >= 2
        for i in range(len(aw) - 3)
    )


def usable(q: object, a: object) -> bool:
    return isinstance(q, str) and isinstance(a, str) and q.strip().endswith("?") and bool(a.strip())


def sdk_venv(venv: Path, lean: bool) -> Path:
    exe = venv / "bin/synthetic-data-kit"
    if exe.exists():
        return exe
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--no-deps", SDK] if lean else [*pip, SDK], check=True)
    if lean:
        subprocess.run([*pip, *LEAN.split()], check=True)
    torch = subprocess.run([venv / "bin/python", "-c", "import torch"], capture_output=True)
    if torch.returncode == 0:
        print("warning: torch is in the sdk venv (not expected from synthetic-data-kit 0.0.5)")
    return exe


def serve(port: int, log: Path) -> subprocess.Popen[bytes]:
    from served_teacher import serve as serve_gguf

    from distill.models import resolve_gguf

    threads = ("--n_threads", "2", "--n_threads_batch", "2")
    return serve_gguf(resolve_gguf(TEACHER), port, log, threads)


def run_sdk(exe: Path, out: Path, port: int, md_only: bool) -> dict:
    stage, parsed, made = out / "sdk/input", out / "sdk/parsed", out / "sdk/generated"
    for d in (stage, parsed, made):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    skipped = []
    for f in sorted(DOCS.rglob("*")):
        if not f.is_file():
            continue
        flat = str(f.relative_to(DOCS).with_suffix("")).replace("/", "__")
        if f.suffix == ".md":
            shutil.copy(f, stage / f"{flat}.txt")
        elif f.suffix in (".html", ".pdf") and not md_only:
            shutil.copy(f, stage / f"{flat}{f.suffix}")
        else:
            skipped.append(str(f.relative_to(DOCS)))
    cfg = out / "sdk/config.yaml"
    make_config = [str(exe.parent / "python"), "-c", CONFIG, str(cfg), str(port), TEACHER]
    subprocess.run(make_config, check=True)
    env = {**os.environ, "API_ENDPOINT_KEY": "none"}
    # sdk's commands exit 0 even when files fail: results are checked by counting files.
    subprocess.run([str(exe), "-c", str(cfg), "ingest", str(stage), "-o", str(parsed)], env=env)
    t0 = time.perf_counter()
    subprocess.run(
        [str(exe), "-c", str(cfg), "create", str(parsed), "--type", "qa", "-o", str(made)], env=env
    )
    secs = time.perf_counter() - t0
    return {
        "seconds": round(secs, 1),
        "skipped": skipped,
        "pages_in": len(list(stage.iterdir())),
        "pages_parsed": len(list(parsed.glob("*.txt"))),
    }


def sdk_pairs(out: Path) -> tuple[list[tuple[str, str, str]], int]:
    rows, long_pages = [], 0
    for f in sorted((out / "sdk/generated").glob("*_qa_pairs.json")):
        page = (out / "sdk/parsed" / (f.name[: -len("_qa_pairs.json")] + ".txt")).read_text()
        long_pages += len(page) > 4000  # sdk split it: the page is then wider than the chunk
        for p in json.loads(f.read_text()).get("qa_pairs") or []:
            if isinstance(p, dict):
                rows.append((p.get("question"), p.get("answer"), page))
    return rows, long_pages


def run_distill(out: Path, port: int, extra: list[str], name: str = "distill_served") -> Path:
    shutil.rmtree(out / name, ignore_errors=True)
    base = "teacher.options."
    sets = [f"run_dir={out}", f"name={name}", "teacher=openai:" + TEACHER, *extra]
    sets += [f"{base}base_url=http://127.0.0.1:{port}/v1", f"{base}api_key_env=BENCH_TEACHER_KEY"]
    sets += [f"{base}{kv}" for kv in ("structured=json_object", "concurrency=1", "timeout_s=600")]
    cmd = [sys.executable, "-m", "distill", "run", str(REPO / "recipes/quickstart.yaml")]
    cmd += ["--until", "curate", *[a for s in sets for a in ("--set", s)]]
    env = {**os.environ, "BENCH_TEACHER_KEY": "none"}
    if subprocess.run(cmd, env=env, cwd=REPO).returncode:
        raise SystemExit("distill run --until curate failed")
    return out / name


def distill_rows(run: Path) -> tuple[dict, list[dict], dict[str, str], dict[str, str]]:
    import pyarrow.parquet as pq

    manifest = json.loads((run / "manifest.json").read_text())
    gen = {**manifest["stages"]["generate"], "teacher": manifest.get("models", {}).get("teacher")}
    samples = pq.read_table(run / "generate/samples.parquet").to_pylist()
    chunks = pq.read_table(run / "ingest/chunks.parquet", columns=["chunk_id", "text"]).to_pylist()
    docs = pq.read_table(run / "ingest/documents.parquet", columns=["doc_id", "text"]).to_pylist()
    return (
        gen,
        samples,
        {c["chunk_id"]: c["text"] for c in chunks},
        {d["doc_id"]: d["text"] for d in docs},
    )


def manifest_counts(run: Path, stage: str) -> dict:
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    return stages.get(stage, {}).get("counts") or {}


def pct(hit: int, n: int) -> str:
    return f"{hit / n:.0%} ({hit}/{n})" if n else "—"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "runs/peer_sdk")
    ap.add_argument("--sdk-venv", type=Path, default=Path("/work/sdk-venv"))
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--md-only", action="store_true")
    ap.add_argument("--lean", action="store_true")
    ap.add_argument("--distill-run", type=Path, help="read this run; do not regenerate")
    ap.add_argument("--report-only", action="store_true", help="tabulate OUT as it is")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        help="a recipe override for distill's run (repeatable), e.g. the extractive data: "
        "generate.pairs_per_request=4, generate.pairs_template=qa_keyed@v1",
    )
    ap.add_argument("--name", default="distill_served", help="distill's run folder in OUT")
    ap.add_argument("--skip-sdk", action="store_true", help="reuse OUT's sdk run")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "sdk_run.json"
    drun = args.distill_run.resolve() if args.distill_run else out / args.name
    if (args.skip_sdk or args.report_only) and not meta_path.exists():
        ap.error(f"{meta_path} not found: run once without --skip-sdk/--report-only")
    if not args.report_only:
        exe = None if args.skip_sdk else sdk_venv(args.sdk_venv, args.lean)
        server = serve(args.port, out / "server.log")
        try:
            if exe is not None:
                meta = run_sdk(exe, out, args.port, args.md_only)
                meta_path.write_text(json.dumps(meta, indent=2))
            if not args.distill_run:
                drun = run_distill(out, args.port, args.set, args.name)
        finally:
            server.terminate()
            server.wait(timeout=30)
    meta = json.loads(meta_path.read_text())
    pairs, long_pages = sdk_pairs(out)
    s_ok = [(q, a, src) for q, a, src in pairs if usable(q, a)]
    s_hit = sum(verbatim_fact(a, src) for _, a, src in s_ok)

    gen, samples, chunk, doc = distill_rows(drun)
    d_ok = [r for r in samples if usable(r["question"], r["answer"])]
    facts = [r for r in d_ok if not r.get("expects_refusal")]

    def hits(table: dict[str, str], key: str) -> int:
        srcs = ["\n\n".join(table.get(i, "") for i in r.get(key) or []) for r in facts]
        return sum(verbatim_fact(r["answer"], src) for r, src in zip(facts, srcs, strict=True))

    c_hit, p_hit = hits(chunk, "source_chunk_ids"), hits(doc, "source_doc_ids")
    secs, sdk_share = float(gen["duration_s"]), pct(s_hit, len(s_ok)) + " vs page"
    d_share = f"{pct(c_hit, len(facts))} vs chunk; {pct(p_hit, len(facts))} vs page"
    rows = [
        ("synthetic-data-kit (create qa)", len(pairs), len(s_ok), meta["seconds"], sdk_share),
        (f"distill (generate, {drun.name})", len(samples), len(d_ok), secs, d_share),
    ]
    print("\n# distill vs synthetic-data-kit 0.0.5: one llama-cpp-python server, ", end="")
    print("Qwen2.5-Coder-0.5B Q4_K_M, 2 threads, n_ctx 4096\n")
    print(
        "| tool | pairs written | usable pairs | teacher seconds | usable pairs / teacher-s ",
        end="",
    )
    print("| verbatim-fact share of usable |\n| --- | --- | --- | --- | --- | --- |")
    for tool, written, ok, t, share in rows:
        print(f"| {tool} | {written} | {ok} | {t:.1f} | {ok / t if t else 0:.3f} | {share} |")
    counts = gen.get("counts", {})
    print(
        f"\nsdk: {meta['pages_parsed']}/{meta['pages_in']} pages ingested; left out: "
        f"{', '.join(meta['skipped']) or 'none'}; pages over 4000 chars (split): {long_pages}."
    )
    curated = manifest_counts(drun, "curate")
    if curated:
        kept = int(curated.get("train", 0)) + int(curated.get("eval", 0))
        print(
            f"distill's curation kept {kept} of {counts.get('samples')} "
            f"({kept / secs:.3f} curated samples per teacher-second; its checks in "
            f"{drun}/curate/report.md); sdk's own curate (a rating pass by the teacher) "
            "was not run."
        )
    print(
        f"distill: {counts.get('samples')} samples, tasks {counts.get('tasks')}, "
        f"{counts.get('failures')} failures, {counts.get('cached_replies')} cached replies "
        f"(they cost no teacher time), teacher {gen['teacher']}; "
        f"{len(d_ok) - len(facts)} usable refusal rows left out of the share."
    )
    keys = ("tool", "written", "usable", "teacher_s", "verbatim")
    results = [dict(zip(keys, r, strict=True)) for r in rows]
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
