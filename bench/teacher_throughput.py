"""Teacher request engine throughput: N requests against a loopback server.

The server (bench/loopback_server.py, its own process) answers every chat completion
after a fixed delay. distill's `openai:` teacher (the real openai SDK under distill's
async engine, behind the SQLite request cache) sends N distinct requests at the given
concurrency; then the same N again, which the cache must answer with nothing sent.

Goals: achieved / ideal (concurrency / delay) >= 0.95; distill's CPU time
per request <= 1 ms (this process's CPU time: engine, SDK, HTTP client and cache);
the all-cached rerun <= 5 s with zero requests sent.

    .venv/bin/python bench/teacher_throughput.py [--requests 10000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def served(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats") as r:
        return int(json.load(r)["served"])


def bare_sdk(port: int, chats: list, concurrency: int) -> tuple[float, float]:
    """The same requests through the bare openai SDK (same transport, loop and raw
    path, no distill): wall and CPU seconds, the floor distill's figures sit on."""
    import asyncio

    import openai

    from distill.teachers.engine import aiohttp_client, loop_factory

    async def go() -> None:
        async with openai.AsyncOpenAI(
            api_key="bench-key",
            base_url=f"http://127.0.0.1:{port}/v1",
            max_retries=0,
            http_client=aiohttp_client(openai),
        ) as client:
            queue = list(range(len(chats) - 1, -1, -1))

            async def worker(k: int) -> None:
                await asyncio.sleep(k * 0.5 / concurrency)
                while queue:
                    body = {"model": "bench", "messages": chats[queue.pop()], "max_tokens": 32}
                    json.loads(await client.post("/chat/completions", body=body, cast_to=bytes))

            await asyncio.gather(*(worker(k) for k in range(concurrency)))

    cpu0, t0 = time.process_time(), time.perf_counter()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(go())
    return time.perf_counter() - t0, time.process_time() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--delay", type=float, default=0.2, help="Server reply delay, seconds.")
    args = ap.parse_args()

    from distill.teachers.cache import CachedTeacher, RequestCache
    from distill.teachers.factory import make_teacher

    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "loopback_server.py"), "--delay", str(args.delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        port = int(line.split()[1])
        os.environ["DISTILL_BENCH_KEY"] = "bench-key"
        teacher = make_teacher(
            "openai:bench",
            {
                "base_url": f"http://127.0.0.1:{port}/v1",
                "api_key_env": "DISTILL_BENCH_KEY",
                "concurrency": args.concurrency,
                "timeout_s": 30,
            },
        )
        chats = [
            [
                {"role": "system", "content": "You write FAQ entries for a help centre."},
                {"role": "user", "content": f"Help page {i}: trials last 14 days. Ask."},
            ]
            for i in range(args.requests)
        ]
        # Warm up (imports, first connections), then the bare-SDK floor, then distill.
        warm = [[{"role": "user", "content": f"warm-up {i}"}] for i in range(256)]
        teacher.complete_many(warm, max_tokens=32)
        base_wall, base_cpu = bare_sdk(port, chats, args.concurrency)
        before = served(port)
        with tempfile.TemporaryDirectory() as tmp:
            cache = RequestCache(Path(tmp) / "cache.sqlite")
            cached = CachedTeacher(teacher, cache)
            cpu0, t0 = time.process_time(), time.perf_counter()
            replies = cached.complete_many(chats, max_tokens=32, temperature=0.7)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            failed = sum(r.error is not None for r in replies)
            sent = served(port) - before

            t1 = time.perf_counter()
            again = cached.complete_many(chats, max_tokens=32, temperature=0.7)
            rerun = time.perf_counter() - t1
            sent_again = served(port) - before - sent
            same = [a.text for a in again] == [r.text for r in replies]
            cache.close()
    finally:
        server.terminate()
        server.wait()

    ideal = args.concurrency / args.delay
    rate = args.requests / wall
    print(f"requests                {args.requests:,} (failed {failed}, server answered {sent:,})")
    print(f"concurrency / delay     {args.concurrency} / {args.delay} s (ideal {ideal:.0f} req/s)")
    print(f"wall time               {wall:.2f} s")
    print(f"achieved                {rate:.1f} req/s = {rate / ideal:.3f} of ideal (goal >= 0.95)")
    print(f"CPU per request         {cpu / args.requests * 1000:.3f} ms (goal <= 1 ms)")
    n = args.requests
    print(
        f"bare SDK, same requests {n / base_wall:.1f} req/s = {n / base_wall / ideal:.3f} of "
        f"ideal, {base_cpu / n * 1000:.3f} ms CPU a request"
    )
    print(f"distill's own CPU       {(cpu - base_cpu) / n * 1000:.3f} ms a request (above the SDK)")
    print(f"cached rerun            {rerun:.2f} s, {sent_again} requests sent (goal <= 5 s, 0)")
    print(f"rerun replies identical {same}")


if __name__ == "__main__":
    main()
