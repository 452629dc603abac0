"""The load test of `distill serve`: the real OpenAI SDK (AsyncOpenAI) as the client, over
loopback, at several concurrencies (default 1, 4 and 16). Each level sends a bounded
number of requests and stops sending after a bounded time; it reports requests/s, p50
and p99 latency, p50 time to the first token (streamed) and completion tokens/s, and
fails (exit 1) when a request was lost (no reply) or refused, or the server died.

    .venv/bin/python bench/serve_load.py recipes/quickstart.yaml   # starts distill serve
    .venv/bin/python bench/serve_load.py --url http://127.0.0.1:8080/v1 --model quickstart

With a recipe it starts `distill serve RECIPE` on a free port (after `distill run`), and
asks the run's own questions (curated questions, else one per chunk heading).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Level:
    concurrency: int
    sent: int = 0
    answered: int = 0
    refused: list[str] = field(default_factory=list)  # an error reply (4xx/5xx), its reason
    lost: list[str] = field(default_factory=list)  # no reply: connection lost or timed out
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)
    completion_tokens: int = 0

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        del out["latencies"], out["first_token"]
        out.update(
            requests_per_s=round(self.answered / self.wall_s, 3) if self.wall_s else None,
            p50_s=percentile(self.latencies, 50),
            p99_s=percentile(self.latencies, 99),
            first_token_p50_s=percentile(self.first_token, 50),
            tokens_per_s=round(self.completion_tokens / self.wall_s, 2) if self.wall_s else None,
        )
        return out


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile (with few values, p99 is the slowest)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)], 3)


async def level(
    url: str,
    model: str,
    questions: list[str],
    concurrency: int,
    requests: int,
    max_s: float,
    max_tokens: int | None,
    stream: bool,
) -> Level:
    """`requests` questions sent by `concurrency` workers; none started after `max_s`."""
    import openai

    out = Level(concurrency)
    sdk = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=max_s + 600)
    extra: dict[str, Any] = {} if max_tokens is None else {"max_tokens": max_tokens}
    t0 = time.perf_counter()

    async def one(question: str) -> None:
        start = time.perf_counter()
        messages = [{"role": "user", "content": question}]
        try:
            if stream:
                chunks = await sdk.chat.completions.create(
                    model=model,
                    messages=messages,  # type: ignore[arg-type]
                    stream=True,
                    stream_options={"include_usage": True},
                    **extra,
                )
                text = ""
                async for c in chunks:
                    if c.choices and c.choices[0].delta.content:
                        if not text:
                            out.first_token.append(time.perf_counter() - start)
                        text += c.choices[0].delta.content
                    if c.usage is not None:
                        out.completion_tokens += c.usage.completion_tokens
            else:
                got = await sdk.chat.completions.create(
                    model=model,
                    messages=messages,  # type: ignore[arg-type]
                    **extra,
                )
                out.completion_tokens += got.usage.completion_tokens if got.usage else 0
        except openai.APIStatusError as e:
            out.refused.append(f"{e.status_code}: {e.message}")
            return
        except openai.APIError as e:  # connection lost, timed out
            out.lost.append(f"{type(e).__name__}: {e}")
            return
        out.latencies.append(time.perf_counter() - start)
        out.answered += 1

    async def worker() -> None:
        while out.sent < requests and time.perf_counter() - t0 < max_s:
            question = questions[out.sent % len(questions)]
            out.sent += 1
            await one(question)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await sdk.close()
    out.wall_s = round(time.perf_counter() - t0, 3)
    return out


def questions_of(recipe: Path, sets: list[str]) -> tuple[str, list[str]]:
    """The recipe's name and questions: its curated questions, else one per chunk heading."""
    from distill import tables
    from distill.recipe import load_recipe
    from distill.runfolder import RunFolder
    from distill.tables import Chunk, CuratedSample

    r = load_recipe(recipe, sets)
    run = RunFolder(r.run_path)
    found: list[str] = []
    for part in ("eval", "train"):
        if run.curated(part).is_file():
            found += [s["question"] for s in tables.read(run.curated(part), CuratedSample)]
    if not found and run.chunks.is_file():
        headings = {c["heading_path"] for c in tables.read(run.chunks, Chunk)}
        found = [f"What does the documentation say about {h}?" for h in sorted(headings)]
    return r.name, sorted(set(found)) or ["What does the documentation cover?"]


def alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=10) as r:
            return bool(r.status == 200 and json.load(r)["data"])
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(recipe: Path, sets: list[str], log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`distill serve RECIPE` on a free loopback port, once it answers."""
    port = free_port()
    args = [sys.executable, "-m", "distill", "serve", str(recipe), "--port", str(port)]
    for s in sets:
        args += ["--set", s]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + 900  # a first start exports the LoRA GGUF
            while not alive(url):
                if proc.poll() is not None:
                    raise SystemExit(f"distill serve exited: {log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise SystemExit("distill serve did not answer in 900 s")
                time.sleep(0.5)
            yield url, proc
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipe", nargs="?", type=Path, help="start `distill serve RECIPE`")
    p.add_argument("--set", action="append", default=[], help="recipe override (repeatable)")
    p.add_argument("--url", help="a running server's /v1 URL instead of a recipe")
    p.add_argument("--model", help="with --url: the model it serves")
    p.add_argument("--levels", default="1,4,16", help="concurrencies, comma-separated")
    p.add_argument("--requests", type=int, default=32, help="requests per level")
    p.add_argument("--max-seconds", type=float, default=300, help="no new request after")
    p.add_argument("--max-tokens", type=int, help="token cap per answer (default eval's)")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--json", type=Path, help="write the results here too")
    a = p.parse_args()
    if (a.recipe is None) == (a.url is None) or (a.url and not a.model):
        p.error("give a RECIPE, or --url and --model")
    levels = [int(c) for c in a.levels.split(",")]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def run(url: str, model: str, questions: list[str]) -> list[Level]:
        return [
            asyncio.run(
                level(url, model, questions, c, a.requests, a.max_seconds, a.max_tokens, a.stream)
            )
            for c in levels
        ]

    with contextlib.ExitStack() as stack:
        if a.recipe is not None:
            model, questions = questions_of(a.recipe, a.set)
            log = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve_load-{os.getpid()}.log"
            url, proc = stack.enter_context(server(a.recipe, a.set, log))
        else:
            url, model, proc = a.url, a.model, None
            questions = ["What does the documentation cover?"]
        results = run(url, model, questions)
        up = alive(url) and (proc is None or proc.poll() is None)
    report = {
        "url": url,
        "model": model,
        "stream": a.stream,
        "cpu": os.cpu_count(),
        "levels": [r.summary() for r in results],
        "server_alive_after": up,
    }
    for r in report["levels"]:
        print(
            f"concurrency {r['concurrency']:>2}: {r['answered']}/{r['sent']} answered in "
            f"{r['wall_s']} s, {r['requests_per_s']} req/s, p50 {r['p50_s']} s, "
            f"p99 {r['p99_s']} s, "
            f"first token p50 {r['first_token_p50_s']} s, {r['tokens_per_s']} tokens/s"
            + (f"; refused {r['refused'][:2]}" if r["refused"] else "")
            + (f"; LOST {r['lost'][:2]}" if r["lost"] else "")
        )
    print(f"server alive after: {up}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))
    ok = up and all(r.answered == r.sent and r.sent > 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
