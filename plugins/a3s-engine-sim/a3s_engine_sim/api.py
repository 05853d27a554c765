"""The OpenAI-compatible endpoints, in OpenAI's exact response and stream-chunk shapes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from a3s_engine_sim.config import SimConfig
from a3s_engine_sim.model import (
    LatencyModel,
    embedding,
    estimate_tokens,
    pack_base64,
    prompt_key,
    token_text,
)
from a3s_engine_sim.prefix_cache import block_hashes
from a3s_engine_sim.state import BLOCK, EngineState, QueueFull, Sequence


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str, param: str | None = None,
                 code: str | int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param
        self.code = code if code is not None else status

    def response(self) -> web.Response:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}
        return web.json_response(body, status=self.status)


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", param, "invalid_request")


@dataclass
class Step:
    """One decode step's output for one choice."""

    index: int
    text: str
    finish_reason: str | None


@dataclass
class Job:
    prompts: list[tuple[bytes, int]]  # per choice: (text key, prompt tokens)
    prompt_tokens: int
    max_tokens: int
    stops: list[str]
    completion_tokens: int = 0
    # Per distinct prompt: its KV block hashes and its tokens (for prefix caching).
    blocks: tuple[tuple[tuple[bytes, ...], int], ...] = ()


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(str(p) for p in parts)
    raise bad_request("messages[].content must be a string or a list of parts", "messages")


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def _int_param(
    body: dict[str, Any], name: str, default: int | None, lo: int, hi: int
) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise bad_request(f"{name} must be an integer between {lo} and {hi}, got {value!r}", name)
    return value


class OpenAIApi:
    def __init__(self, cfg: SimConfig, model: LatencyModel, state: EngineState) -> None:
        self.cfg, self.model, self.state = cfg, model, state

    # ------------------------------------------------------------------ shared checks

    def check_model(self, body: dict[str, Any]) -> str:
        name = body.get("model") or self.cfg.served_name
        if name not in self.cfg.served_model_names:
            raise ApiError(404, f"The model `{name}` does not exist.", "NotFoundError",
                           "model", "model_not_found")
        return str(name)

    def _job(self, body: dict[str, Any], texts: list[str], extra_tokens: int) -> Job:
        n = _int_param(body, "n", 1, 1, 128) or 1
        seed = body["seed"] if isinstance(body.get("seed"), int) else self.cfg.seed
        prompts = [
            (prompt_key(text, seed), estimate_tokens(text) + extra_tokens)
            for text in texts for _ in range(n)
        ]
        prompt_tokens = sum(tokens for _, tokens in prompts) // n
        limit = self.cfg.max_model_len
        longest = max(tokens for _, tokens in prompts)
        if longest >= limit:
            raise bad_request(
                f"This model's maximum context length is {limit} tokens. However, your "
                f"request has {longest} input tokens. Please reduce the length of the input.",
                "messages" if "messages" in body else "prompt",
            )
        requested = body.get("max_completion_tokens", body.get("max_tokens"))
        param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        if requested is None:
            max_tokens = min(self.cfg.default_max_tokens, limit - longest)
        else:
            max_tokens = _int_param(body, param, None, 1, 10**9) or 1
            if longest + max_tokens > limit:
                raise bad_request(
                    f"This model's maximum context length is {limit} tokens. However, you "
                    f"requested {longest + max_tokens} tokens ({longest} in the input, "
                    f"{max_tokens} in the completion). Please reduce the length of the input "
                    "or the completion.", param,
                )
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else [s for s in stop or [] if isinstance(s, str)]
        distinct = dict.fromkeys(texts)
        blocks = tuple((block_hashes(t, BLOCK), estimate_tokens(t) + extra_tokens)
                       for t in distinct)
        return Job(prompts, prompt_tokens, max_tokens, [s for s in stops if s], blocks=blocks)

    async def generate(self, job: Job) -> AsyncGenerator[list[Step], None]:
        """Queue, prefill, then one step per decode iteration until every choice is done."""
        state, model = self.state, self.model
        seq = Sequence(prompt_tokens=job.prompt_tokens, max_tokens=job.max_tokens)
        state.requests_total += 1
        async with state.admit(seq):
            # Blocks already cached are not prefilled again; the n copies of one prompt
            # (n > 1) share its blocks.
            prompt_total = sum(t for _, t in job.prompts)
            cached = sum(state.prefix.cached_tokens(h, t) for h, t in job.blocks)
            cached += prompt_total - sum(t for _, t in job.blocks)
            prefill = model.wall(model.prefill_s(prompt_total - cached))
            await asyncio.sleep(state.prefill_lane.book(prefill))
            room = state.kv_capacity_blocks - state.kv_reserved_blocks + seq.reserved_blocks
            for hashes, _ in job.blocks:
                state.prefix.insert(hashes, room)
            state.prompt_tokens_total += sum(t for _, t in job.prompts)
            texts = ["" for _ in job.prompts]
            done: list[str | None] = [None for _ in job.prompts]
            last = time.monotonic()
            for pos in range(job.max_tokens):
                if pos:
                    step = model.decode_step_s(len(state.running), state.context_tokens())
                    await asyncio.sleep(model.wall(step))
                now = time.monotonic()
                if pos == 0:
                    seq.first_token = now
                    state.ttft.observe(now - seq.arrived)
                else:
                    state.itl.observe(now - last)
                last = now
                seq.generated += 1
                out: list[Step] = []
                for i, (key, _) in enumerate(job.prompts):
                    if done[i]:
                        continue
                    piece = token_text(key, i, pos)
                    job.completion_tokens += 1
                    state.generation_tokens_total += 1
                    text = texts[i] + piece
                    cut = min((text.find(s) for s in job.stops if s in text), default=-1)
                    if cut >= 0:
                        out.append(Step(i, text[:cut][len(texts[i]):], "stop"))
                        done[i] = "stop"
                    else:
                        last_token = pos == job.max_tokens - 1
                        out.append(Step(i, piece, "length" if last_token else None))
                        done[i] = "length" if last_token else None
                    texts[i] = text
                yield out
                if all(done):
                    break
        for reason in done:
            if reason:
                state.success[reason] = state.success.get(reason, 0) + 1
        state.e2e.observe(time.monotonic() - seq.arrived)

    # ------------------------------------------------------------------ endpoints

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        name = self.check_model(body)
        self._require("decoder", "Chat Completions")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("messages must be a non-empty list", "messages")
        text = "\n".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))
        job = self._job(body, [text], extra_tokens=3 * len(messages))
        return await self._respond(request, body, name, job, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        name = self.check_model(body)
        self._require("decoder", "Completions")
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            texts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            texts = list(prompt)
        elif isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
            texts = [" ".join(map(str, prompt))]  # token ids: about one token per id
        else:
            raise bad_request("prompt must be a string, a list of strings or of token ids",
                              "prompt")
        job = self._job(body, texts, extra_tokens=0)
        return await self._respond(request, body, name, job, chat=False)

    def _require(self, kind: str, api: str) -> None:
        if self.cfg.kind != kind:
            raise bad_request(f"The model does not support {api} API")

    async def _respond(self, request: web.Request, body: dict[str, Any], name: str, job: Job,
                       chat: bool) -> web.StreamResponse:
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        try:
            if body.get("stream"):
                return await self._stream(request, body, rid, created, name, job, chat)
            texts: dict[int, str] = {}
            reasons: dict[int, str | None] = {}
            async with aclosing(self.generate(job)) as gen:
                async for steps in gen:
                    for s in steps:
                        texts[s.index] = texts.get(s.index, "") + s.text
                        reasons[s.index] = s.finish_reason
        except QueueFull as exc:
            raise ApiError(429, f"The server is overloaded: {exc}. Retry later.",
                           "rate_limit_error", None, "rate_limit_exceeded") from None
        choices = []
        for i in range(len(job.prompts)):
            if chat:
                choices.append({"index": i, "message": {"role": "assistant", "content": texts[i],
                                "refusal": None, "tool_calls": []},
                                "logprobs": None, "finish_reason": reasons[i]})
            else:
                choices.append({"index": i, "text": texts[i], "logprobs": None,
                                "finish_reason": reasons[i]})
        return web.json_response({"id": rid, "object": obj, "created": created, "model": name,
                                  "choices": choices, "usage": self._usage(job)})

    def _usage(self, job: Job) -> dict[str, int]:
        prompt = job.prompt_tokens
        return {"prompt_tokens": prompt, "completion_tokens": job.completion_tokens,
                "total_tokens": prompt + job.completion_tokens}

    async def _stream(self, request: web.Request, body: dict[str, Any], rid: str, created: int,
                      name: str, job: Job, chat: bool) -> web.StreamResponse:
        options = body.get("stream_options") or {}
        include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        obj = "chat.completion.chunk" if chat else "text_completion"
        response: web.StreamResponse | None = None

        def chunk(choices: list[dict[str, Any]]) -> bytes:
            data: dict[str, Any] = {"id": rid, "object": obj, "created": created, "model": name,
                                    "choices": choices}
            if include_usage:
                data["usage"] = None
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        def choice(step: Step, first: bool) -> dict[str, Any]:
            if not chat:
                return {"index": step.index, "text": step.text, "logprobs": None,
                        "finish_reason": step.finish_reason}
            delta: dict[str, Any] = {"content": step.text}
            if first:
                delta["role"] = "assistant"
            return {"index": step.index, "delta": delta, "logprobs": None,
                    "finish_reason": step.finish_reason}

        first = True
        async with aclosing(self.generate(job)) as gen:
            async for steps in gen:
                if response is None:  # headers go with the first token: 429 stays possible
                    response = web.StreamResponse(
                        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
                    )
                    await response.prepare(request)
                await response.write(b"".join(chunk([choice(s, first)]) for s in steps))
                first = False
        assert response is not None
        if include_usage:
            data = {"id": rid, "object": obj, "created": created, "model": name, "choices": [],
                    "usage": self._usage(job)}
            await response.write(b"data: " + json.dumps(data).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await _json(request)
        name = self.check_model(body)
        self._require("encoder", "Embeddings")
        raw = body.get("input")
        if isinstance(raw, str):
            inputs = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
            inputs = list(raw)
        elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
            inputs = [" ".join(map(str, raw))]
        elif isinstance(raw, list) and raw and all(isinstance(x, list) for x in raw):
            inputs = [" ".join(map(str, x)) for x in raw]
        else:
            raise bad_request("input must be a string, a list of strings or of token ids", "input")
        dim = _int_param(body, "dimensions", self.cfg.embedding_dim, 1, self.cfg.embedding_dim)
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise bad_request(f"encoding_format must be 'float' or 'base64', got {fmt!r}",
                              "encoding_format")
        tokens = [estimate_tokens(t) for t in inputs]
        if max(tokens) > self.cfg.max_model_len:
            raise bad_request(f"input has {max(tokens)} tokens; this model's maximum context "
                              f"length is {self.cfg.max_model_len} tokens", "input")
        seq = Sequence(prompt_tokens=sum(tokens), max_tokens=0)
        self.state.requests_total += 1
        try:
            async with self.state.admit(seq):
                await asyncio.sleep(self.model.wall(self.model.prefill_s(sum(tokens))))
        except QueueFull as exc:
            raise ApiError(429, f"The server is overloaded: {exc}. Retry later.",
                           "rate_limit_error", None, "rate_limit_exceeded") from None
        self.state.prompt_tokens_total += sum(tokens)
        self.state.success["stop"] += 1
        self.state.e2e.observe(time.monotonic() - seq.arrived)
        data = []
        for i, text in enumerate(inputs):
            full = embedding(text, self.cfg.embedding_dim, self.cfg.seed)
            vec = full[: dim or self.cfg.embedding_dim]
            if len(vec) != len(full):  # Matryoshka-style truncation keeps unit length
                norm = sum(v * v for v in vec) ** 0.5 or 1.0
                vec = [v / norm for v in vec]
            value: Any = pack_base64(vec) if fmt == "base64" else vec
            data.append({"object": "embedding", "index": i, "embedding": value})
        return web.json_response({"object": "list", "data": data, "model": name,
                                  "usage": {"prompt_tokens": sum(tokens),
                                            "total_tokens": sum(tokens)}})

    async def models(self, request: web.Request) -> web.Response:
        owner = {"vllm": "vllm", "vllm-v0": "vllm", "sglang": "sglang", "tgi": "tgi",
                 "ollama": "library", "llamacpp": "llamacpp"}[self.cfg.dialect]
        created = int(time.time())
        data = [{"id": n, "object": "model", "created": created, "owned_by": owner,
                 "root": self.cfg.model, "parent": None, "max_model_len": self.cfg.max_model_len}
                for n in self.cfg.served_model_names]
        return web.json_response({"object": "list", "data": data})
