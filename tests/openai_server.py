"""A loopback server speaking OpenAI's chat completions and Anthropic's messages wire
formats, with faults on demand."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.faults: list[tuple[int, dict[str, str], str]] = []  # served first, in order
        self.reply = lambda body: "Trials last 14 days."
        self.finish_reason = "stop"
        self.refusal: str | None = None
        self.delay_s = 0.0  # before each successful reply
        self.arrivals: list[float] = []  # time.monotonic() of each request
        self.count_tokens = lambda text: 0  # usage of a reply: 0 keeps the fixed figures
        self.answered: Counter[str] = Counter()  # replies actually delivered, per request
        self.open = threading.Event()  # cleared: requests wait for it
        self.open.set()
        self.epoch = 0  # a request held across an epoch change is dropped unanswered
        self.hold_after: int | None = None  # hold every request after this many replies
        self.held = 0
        self.lock = threading.Lock()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        body = json.loads(handler.rfile.read(length) or b"{}")
        with self.lock:
            self.requests.append(body)
            self.arrivals.append(time.monotonic())
            self.headers.append({k.lower(): v for k, v in handler.headers.items()})
            fault = self.faults.pop(0) if self.faults else None
            epoch = self.epoch
            if self.hold_after is not None and self.answered.total() >= self.hold_after:
                self.open.clear()
            if not self.open.is_set():
                self.held += 1
        if fault:
            status, headers, text = fault
            self._send(handler, status, text, headers)
            return
        if not self.open.wait(timeout=60) or epoch != self.epoch:
            return  # held until the client gave up or died: no reply
        if self.delay_s:
            time.sleep(self.delay_s)
        key = json.dumps(body.get("messages"), sort_keys=True)
        if handler.path.endswith("/messages"):
            self._send(handler, 200, json.dumps(self._anthropic(body)))
            with self.lock:
                self.answered[key] += 1
            return
        content = None if self.refusal else self.reply(body)
        payload = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 1767225600,
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": self.refusal},
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
        if n_in := sum(self.count_tokens(m["content"]) for m in body["messages"]):
            n_out = self.count_tokens(content or "")
            payload["usage"] = {
                "prompt_tokens": n_in,
                "completion_tokens": n_out,
                "total_tokens": n_in + n_out,
            }
        self._send(handler, 200, json.dumps(payload))
        with self.lock:
            self.answered[key] += 1

    def _anthropic(self, body: dict[str, Any]) -> dict[str, Any]:
        """A reply in Anthropic's Messages format (text, or tool use when tools are given)."""
        if self.refusal:
            content: list[dict[str, Any]] = []
            stop = "refusal"
        elif body.get("tools"):
            tool = body["tools"][0]["name"]
            args = json.loads(self.reply(body))
            content = [{"type": "tool_use", "id": "toolu_1", "name": tool, "input": args}]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": self.reply(body)}]
            stop = "max_tokens" if self.finish_reason == "length" else "end_turn"
        return {
            "id": f"msg_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 13, "output_tokens": 5},
        }

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, text: str, headers: dict | None = None
    ) -> None:
        data = text.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)


@contextmanager
def serve() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            fake.handle(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
