"""What answers behind `distill serve`: the fine-tuned student loaded here (eval's
student, `distill.evaluate.systems.load_student`) or an OpenAI-compatible upstream
server that has the adapter loaded (vLLM with --enable-lora, for scale).

A student loaded here is one model: its requests queue for one worker thread and are
answered one at a time, in the order they came (retrieval does not queue: it runs
before, in parallel). Through llama.cpp the reply is streamed as it is decoded, with
eval's settings (greedy unless asked, eval's stop strings, replies cut where they start
to repeat themselves); through transformers it is generated whole and sent as one piece.
An upstream server takes requests concurrently and streams them itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from distill.teachers.base import Message, cut_at_stop
from distill.teachers.llamacpp import LlamaCppModel, LlamaCppTeacher, LoopStop
from distill.teachers.local import LocalTeacher, TransformersTeacher

OnText = Callable[[str], None]


@dataclass
class Reply:
    text: str  # the whole reply: what was streamed, joined
    finish: str  # stop | length | loop (cut where it began to repeat itself)
    prompt_tokens: int
    completion_tokens: int
    seconds: float = 0.0  # generation alone, without the wait in the queue


class RequestError(Exception):
    """A request the server refuses or cannot answer, sent as OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        kind: str = "invalid_request_error",
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.kind, self.param = (
            status,
            " ".join(message.split()),  # one line
            code,
            kind,
            param,
        )


class Cancelled(Exception):
    """The client went away: stop decoding its reply."""


class Student:
    """The model answering grounded prompts. `generate` hands each piece of the reply to
    `on_text` (on the event loop) as it comes and returns the whole of it."""

    n_ctx: int | None = None  # its context in tokens; None: the upstream's own check
    description = ""

    def prompt_tokens(self, messages: list[Message]) -> int | None:
        """The tokens `messages` take in its context (None: unknown here)."""
        return None

    async def generate(
        self,
        messages: list[Message],
        params: dict[str, Any],
        on_text: OnText,
        cancelled: threading.Event,
    ) -> Reply:
        raise NotImplementedError

    def close(self) -> None:
        """Free what it holds."""

    async def aclose(self) -> None:
        """Close what it holds on the server's event loop (its connections)."""


class LocalStudent(Student):
    """The student loaded here (llama.cpp or transformers), one request at a time."""

    def __init__(self, teacher: LocalTeacher, stop_loops: int) -> None:
        self.teacher, self.stop_loops = teacher, stop_loops
        # One worker: the queue that serialises generation on the one loaded model.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="student")
        self.llama: LlamaCppModel | None = None
        if isinstance(teacher, LlamaCppTeacher):
            self.llama = teacher.loaded()
            self.n_ctx = int(self.llama.llm.n_ctx())
            lora = f" + {teacher.adapter.name}" if teacher.adapter else ""
            self.description = f"llama.cpp: {teacher.gguf.name}{lora}"
        elif isinstance(teacher, TransformersTeacher):
            model, _ = teacher.weights.load()
            self.n_ctx = int(getattr(model.config, "max_position_embeddings", 0)) or None
            self.description = f"transformers: {teacher.model} + {teacher.adapter}"

    def prompt_tokens(self, messages: list[Message]) -> int:
        if self.llama is not None:
            return llama_prompt_tokens(self.llama, messages)
        _, tok = self.teacher.weights.load()  # type: ignore[attr-defined]
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    async def generate(
        self,
        messages: list[Message],
        params: dict[str, Any],
        on_text: OnText,
        cancelled: threading.Event,
    ) -> Reply:
        loop = asyncio.get_running_loop()

        def piece(text: str) -> None:  # in the worker thread
            if cancelled.is_set():
                raise Cancelled
            loop.call_soon_threadsafe(on_text, text)

        def answer() -> Reply:
            if cancelled.is_set():  # gone while it waited in the queue
                raise Cancelled
            return self._answer(messages, params, piece)

        return await loop.run_in_executor(self.worker, answer)

    def _answer(self, messages: list[Message], params: dict[str, Any], piece: OnText) -> Reply:
        t0 = time.perf_counter()
        if self.llama is not None:
            reply = llama_stream(self.llama, messages, piece, params, self.stop_loops)
        else:
            c = self.teacher.complete_many([messages], **params)[0]
            if c.error is not None:
                raise RequestError(500, f"the student failed: {c.error}", kind="server_error")
            piece(c.text)
            usage = c.usage
            reply = Reply(c.text, c.finish_reason, usage.input_tokens, usage.output_tokens)
        reply.seconds = time.perf_counter() - t0
        return reply

    def close(self) -> None:
        self.worker.shutdown(wait=True, cancel_futures=True)
        self.teacher.release()


def llama_prompt_tokens(model: LlamaCppModel, messages: list[Message]) -> int:
    """The tokens `messages` take in llama.cpp's context: rendered with the GGUF's chat
    template, as create_chat_completion renders them."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = model.llm
    template = llm.metadata.get("tokenizer.chat_template")
    if template is None:  # a built-in format: the messages' text and a few per turn
        text = "\n".join(m["content"] for m in messages)
        return len(llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)) + 8 * len(
            messages
        )
    vocab = llm._model

    def text_of(token: int) -> str:
        return vocab.token_get_text(token) if token != -1 else ""

    formatter = Jinja2ChatFormatter(template, text_of(llm.token_eos()), text_of(llm.token_bos()))
    prompt = formatter(messages=messages).prompt  # type: ignore[arg-type]
    return len(llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))


class _Count:
    """A logits processor that counts: the prompt's tokens (the first call sees the
    context as it stands) and the tokens sampled after it."""

    def __init__(self) -> None:
        self.prompt: int | None = None
        self.sampled = 0

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        if self.prompt is None:
            self.prompt = len(input_ids)
        self.sampled += 1
        return logits


class _Holdback:
    """Pieces passed on as they come, minus what may yet be taken back: the last `n`
    pieces (a reply that starts to repeat itself is cut n tokens back, and a piece is at
    least a token) and trailing whitespace (the reply is stripped at the end)."""

    def __init__(self, on_text: OnText, n: int) -> None:
        self.on_text, self.n = on_text, n
        self.pending: list[str] = []
        self.sent = ""
        self.tail = ""  # whitespace held back after the last piece sent

    def add(self, piece: str) -> None:
        self.pending.append(piece)
        while len(self.pending) > self.n:
            self._send(self.pending.pop(0))

    def _send(self, text: str) -> None:
        text = self.tail + text
        if not self.sent:
            text = text.lstrip()
        body = text.rstrip()
        self.tail = text[len(body) :]
        if body:
            self.sent += body
            self.on_text(body)

    def finish(self, final: str) -> str:
        """Send what `final` (the whole reply, stripped) has beyond what was sent; the
        text the client received, joined."""
        rest = final[len(self.sent) :] if final.startswith(self.sent) else ""
        if rest:
            self.sent += rest
            self.on_text(rest)
        return self.sent


def llama_stream(
    model: LlamaCppModel,
    messages: list[Message],
    on_text: OnText,
    params: dict[str, Any],
    stop_loops: int,
) -> Reply:
    """One reply through llama.cpp, streamed: LlamaCppModel.chat's reply (its request,
    its loop cut, its stop strings) handed to `on_text` as it is decoded."""
    stop = params.get("stop")
    kwargs = model.request(
        messages,
        None,
        params["max_tokens"],
        params["temperature"],
        params["top_p"],
        params.get("seed"),
        stop,
    )
    count, loop = _Count(), LoopStop(stop_loops, model.llm.token_eos())
    kwargs["logits_processor"] = [count, loop]
    out = _Holdback(on_text, stop_loops)
    pieces: list[str] = []
    finish = "stop"
    try:
        chunks: Any = model.llm.create_chat_completion(**kwargs, stream=True)
        for chunk in chunks:
            choice = chunk["choices"][0]
            if text := choice["delta"].get("content"):
                pieces.append(text)
                out.add(text)
            if choice.get("finish_reason") == "length":
                finish = "length"
    except ValueError as e:  # a prompt over the context (counted before, so rare)
        if "context window" not in str(e):
            raise
        raise RequestError(400, str(e), code="context_length_exceeded") from e
    text = "".join(pieces)
    if loop.cut is not None and loop.start is not None:
        ids = model.llm._input_ids[loop.start : loop.start + loop.cut]
        text = model.llm.detokenize(list(ids)).decode("utf-8", errors="ignore")
        finish = "loop"
    sent = out.finish(cut_at_stop(text, stop).strip())
    return Reply(sent, finish, count.prompt or 0, count.sampled)


class UpstreamStudent(Student):
    """The student behind an OpenAI-compatible server (`openai:MODEL`; `base_url` and
    `api_key_env` as for eval's `ft_model`): requests go on concurrently, streamed."""

    def __init__(self, spec: str, options: dict[str, Any]) -> None:
        from openai import AsyncOpenAI

        from distill.errors import UserError
        from distill.teachers import parse_spec
        from distill.teachers.base import api_key
        from distill.teachers.openai import OpenAITeacher

        backend, model, opts = parse_spec(spec, options)
        if backend is not OpenAITeacher:
            raise UserError(
                f"--upstream takes openai:MODEL (an OpenAI-compatible server such as vLLM "
                f"serving the adapter), not {spec}"
            )
        self.model = model
        try:
            key = api_key(spec, opts.api_key_env)
        except UserError as e:  # worded for a teacher: say it of the upstream server
            raise UserError(str(e).replace("teacher ", "--upstream ", 1)) from None
        self.client = AsyncOpenAI(
            api_key=key,
            base_url=opts.base_url,
            timeout=opts.timeout_s,
            max_retries=opts.max_retries,
        )
        self.description = f"upstream {spec}" + (f" at {opts.base_url}" if opts.base_url else "")

    async def generate(
        self,
        messages: list[Message],
        params: dict[str, Any],
        on_text: OnText,
        cancelled: threading.Event,
    ) -> Reply:
        import openai

        t0 = time.perf_counter()
        pieces: list[str] = []
        finish, usage = "stop", None
        try:
            create: Any = self.client.chat.completions.create  # messages: plain dicts
            stream = await create(
                model=self.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **{k: v for k, v in params.items() if v is not None},
            )
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.delta.content:
                        pieces.append(choice.delta.content)
                        on_text(choice.delta.content)
                    if choice.finish_reason:
                        finish = choice.finish_reason
                if cancelled.is_set():
                    await stream.close()
                    raise Cancelled
        except openai.APIStatusError as e:
            status = e.status_code if 400 <= e.status_code < 500 else 502
            raise RequestError(
                status, f"the upstream server answered {e.status_code}: {e.message}", "upstream"
            ) from e
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise RequestError(
                502, f"the upstream server is not reachable: {e}", "upstream", "server_error"
            ) from e
        return Reply(
            "".join(pieces),
            finish,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            time.perf_counter() - t0,
        )

    async def aclose(self) -> None:
        await self.client.close()
