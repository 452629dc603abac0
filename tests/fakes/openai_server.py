"""A loopback server speaking OpenAI's chat completions, files and batches and
Anthropic's messages and message batches wire formats, with faults on demand."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    # The listen backlog: socketserver's 5 drops connections when 16 clients arrive at
    # once on a busy machine (distill serve's concurrency tests forward 16 at a time).
    request_queue_size = 128
    daemon_threads = True


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
        # Batch APIs: uploaded files, batches, and how they behave.
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls = 1  # status polls that still say in progress
        self.expire_next = 0  # this many of the next batch items end expired
        self.batch_answered: Counter[str] = Counter()  # batch items answered, per custom id

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        raw = handler.rfile.read(length)
        if self._batch_route(handler, raw):
            return
        body = json.loads(raw or b"{}")
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
        if body.get("stream"):
            self._stream(handler, body)
        else:
            self._send(handler, 200, json.dumps(self.chat_completion(body)))
        with self.lock:
            self.answered[key] += 1

    def _stream(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        """The reply as OpenAI streams it: server-sent chunks, a word each, the usage
        chunk when `stream_options.include_usage` asks, then `data: [DONE]`."""
        whole = self.chat_completion(body)
        base = {k: whole[k] for k in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        text = whole["choices"][0]["message"]["content"] or ""
        words = [w + " " for w in text.split(" ")[:-1]] + [text.split(" ")[-1]]
        deltas = [{"role": "assistant", "content": ""}] + [{"content": w} for w in words if w]
        events = [
            {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
        ]
        events.append(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": self.finish_reason}]}
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "choices": [], "usage": whole["usage"]})
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        for e in events:
            handler.wfile.write(f"data: {json.dumps(e)}\n\n".encode())
        handler.wfile.write(b"data: [DONE]\n\n")

    def chat_completion(self, body: dict[str, Any]) -> dict[str, Any]:
        """A reply in OpenAI's chat-completion format."""
        content = None if self.refusal else self.reply(body)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content,
            "refusal": self.refusal,
        }
        if body.get("tools") and content is not None:  # a forced function call
            call = {"name": body["tools"][0]["function"]["name"], "arguments": content}
            message.update(
                content=None,
                tool_calls=[{"id": "call_1", "type": "function", "function": call}],
            )
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 1767225600,
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": message,
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
        return payload

    # -- batch APIs -------------------------------------------------------------

    def _batch_route(self, handler: BaseHTTPRequestHandler, raw: bytes) -> bool:
        """Serve the files / batches / message-batches endpoints; False for others."""
        path, method = handler.path.split("?")[0], handler.command
        port = handler.server.server_address[1]
        if method == "POST" and path == "/v1/files":
            name, data = _multipart_file(handler.headers["Content-Type"], raw)
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = data
            obj = {"id": file_id, "object": "file", "bytes": len(data), "created_at": 1767225600}
            self._send(handler, 200, json.dumps({**obj, "filename": name, "purpose": "batch"}))
        elif method == "POST" and path == "/v1/batches":
            req = json.loads(raw)
            lines = self.files[req["input_file_id"]].decode().splitlines()
            items = [(x["custom_id"], x["body"]) for x in map(json.loads, filter(None, lines))]
            batch_id = self._new_batch("openai", items, req["input_file_id"])
            self._send(handler, 200, json.dumps(self._openai_batch(batch_id)))
        elif method == "GET" and path.startswith("/v1/batches/"):
            batch_id = path.rsplit("/", 1)[1]
            self._advance(batch_id)
            self._send(handler, 200, json.dumps(self._openai_batch(batch_id)))
        elif method == "GET" and path.startswith("/v1/files/") and path.endswith("/content"):
            self._send(handler, 200, self.files[path.split("/")[3]].decode())
        elif method == "POST" and path == "/v1/messages/batches":
            items = [(r["custom_id"], r["params"]) for r in json.loads(raw)["requests"]]
            batch_id = self._new_batch("anthropic", items)
            self._send(handler, 200, json.dumps(self._anthropic_batch(batch_id, port)))
        elif method == "GET" and path.startswith("/v1/messages/batches/"):
            parts = path.split("/")
            if parts[-1] == "results":
                self._send(handler, 200, self.batches[parts[-2]]["results"])
            else:
                self._advance(parts[-1])
                self._send(handler, 200, json.dumps(self._anthropic_batch(parts[-1], port)))
        else:
            return False
        return True

    def _new_batch(self, kind: str, items: list, input_file: str = "") -> str:
        with self.lock:
            batch_id = f"{'batch' if kind == 'openai' else 'msgbatch'}_{len(self.batches) + 1}"
            self.batches[batch_id] = {
                "kind": kind,
                "items": items,
                "polls_left": self.batch_polls,
                "input_file_id": input_file,
                "ended": False,
                "counts": Counter(),
            }
        return batch_id

    def _advance(self, batch_id: str) -> None:
        """Each status poll brings the batch closer to its end; at the end, answer it."""
        b = self.batches[batch_id]
        if b["ended"]:
            return
        if b["polls_left"] > 0:
            b["polls_left"] -= 1
            return
        out, errors = [], []
        for cid, body in b["items"]:
            with self.lock:
                expired = self.expire_next > 0
                self.expire_next -= expired
            if expired:
                b["counts"]["expired"] += 1
                if b["kind"] == "openai":
                    err = {"code": "batch_expired", "message": "not done in time"}
                    errors.append({"custom_id": cid, "response": None, "error": err})
                else:
                    out.append({"custom_id": cid, "result": {"type": "expired"}})
                continue
            self.batch_answered[cid] += 1
            b["counts"]["succeeded"] += 1
            if b["kind"] == "openai":
                resp = {
                    "status_code": 200,
                    "request_id": cid[:8],
                    "body": self.chat_completion(body),
                }
                out.append({"id": f"batch_req_{cid[:8]}", "custom_id": cid, "response": resp})
            else:
                msg = {"type": "succeeded", "message": self._anthropic(body)}
                out.append({"custom_id": cid, "result": msg})
        jsonl = lambda rows: "".join(json.dumps(r) + "\n" for r in rows)  # noqa: E731
        if b["kind"] == "openai":
            b["output_file_id"] = f"file-out-{batch_id}" if out else None
            b["error_file_id"] = f"file-err-{batch_id}" if errors else None
            if out:
                self.files[b["output_file_id"]] = jsonl(out).encode()
            if errors:
                self.files[b["error_file_id"]] = jsonl(errors).encode()
        else:
            b["results"] = jsonl(out)
        b["ended"] = True

    def _openai_batch(self, batch_id: str) -> dict[str, Any]:
        b = self.batches[batch_id]
        n, c = len(b["items"]), b["counts"]
        return {
            "id": batch_id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": None,
            "input_file_id": b["input_file_id"],
            "completion_window": "24h",
            "status": "completed" if b["ended"] else "in_progress",
            "output_file_id": b.get("output_file_id"),
            "error_file_id": b.get("error_file_id"),
            "created_at": 1767225600,
            "request_counts": {
                "total": n,
                "completed": c["succeeded"],
                "failed": c["expired"],
            },
        }

    def _anthropic_batch(self, batch_id: str, port: int) -> dict[str, Any]:
        b = self.batches[batch_id]
        c, ended = b["counts"], b["ended"]
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {
                "processing": 0 if ended else len(b["items"]),
                "succeeded": c["succeeded"],
                "errored": 0,
                "canceled": 0,
                "expired": c["expired"],
            },
            "created_at": "2026-01-01T00:00:00Z",
            "expires_at": "2026-01-02T00:00:00Z",
            "ended_at": "2026-01-01T01:00:00Z" if ended else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": (
                f"http://127.0.0.1:{port}/v1/messages/batches/{batch_id}/results" if ended else None
            ),
        }

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


def _multipart_file(content_type: str, raw: bytes) -> tuple[str, bytes]:
    """The uploaded file (name, bytes) of a multipart/form-data body."""
    from email.parser import BytesParser
    from email.policy import HTTP

    msg = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    for part in msg.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_filename() or "", part.get_payload(decode=True)
    raise ValueError("no file in the upload")


@contextmanager
def serve() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            fake.handle(self)

        def do_GET(self) -> None:  # noqa: N802
            fake.handle(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
