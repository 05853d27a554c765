"""The simulator's OpenAI API, checked with the official `openai` client against a real
server (in-process aiohttp app on a loopback port)."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import openai
import pytest
from a3s_engine_sim.config import parse_args
from a3s_engine_sim.server import create_app
from aiohttp import web
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

Start = Callable[..., Awaitable[str]]


@pytest.fixture
async def start_sim() -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []

    async def start(*args: str) -> str:
        cfg = parse_args(["--port", "0", "--served-model-name", "m", "--time-scale", "0.001",
                          "--jitter", "0", *args])
        runner = web.AppRunner(create_app(cfg), handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def client(url: str, **kw: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, **kw)  # type: ignore[arg-type]


async def metrics(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


async def test_chat_streaming_parses_with_openai_client(start_sim: Start) -> None:
    url = await start_sim()
    c = client(url)
    msgs: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Tell me about GPUs, please."}
    ]
    stream = await c.chat.completions.create(
        model="m", messages=msgs, max_tokens=7, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert len({ch.id for ch in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    content_chunks = [ch for ch in chunks if ch.choices]
    assert content_chunks[0].choices[0].delta.role == "assistant"
    assert content_chunks[-1].choices[0].finish_reason == "length"
    assert all(ch.usage is None for ch in chunks[:-1])
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == 7
    streamed = "".join(ch.choices[0].delta.content or "" for ch in content_chunks)
    # Same prompt → same text, streamed or not (deterministic filler).
    full = await c.chat.completions.create(model="m", messages=msgs, max_tokens=7)
    assert full.choices[0].message.content == streamed
    assert len(streamed.split()) == 7
    assert full.usage is not None and full.usage.prompt_tokens == usage.prompt_tokens


async def test_chat_non_streaming_usage_and_default_max_tokens(start_sim: Start) -> None:
    url = await start_sim("--default-max-tokens", "5")
    prompt = "x" * 400  # ≈ 100 tokens at 4 characters per token, + 3 for the message
    r = await client(url).chat.completions.create(
        model="m", messages=[{"role": "user", "content": prompt}])
    assert r.object == "chat.completion" and r.model == "m"
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (103, 5, 108)


async def test_completions_stream_n_and_stop(start_sim: Start) -> None:
    url = await start_sim()
    c = client(url)
    r = await c.completions.create(model="m", prompt="Once upon a time", max_tokens=6, n=2)
    assert r.object == "text_completion" and [ch.index for ch in r.choices] == [0, 1]
    assert r.usage is not None and r.usage.completion_tokens == 12
    first_word = r.choices[0].text.split()[1]
    stopped = await c.completions.create(model="m", prompt="Once upon a time", max_tokens=6,
                                         stop=[" " + first_word])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].text == r.choices[0].text.split(" " + first_word)[0]
    stream = await c.completions.create(model="m", prompt="Once upon a time", max_tokens=6,
                                        stream=True)
    text = "".join([ch.choices[0].text async for ch in stream if ch.choices])
    assert text == r.choices[0].text


async def test_context_length_is_enforced_like_vllm(start_sim: Start) -> None:
    url = await start_sim("--max-model-len", "64")
    with pytest.raises(openai.BadRequestError, match="maximum context length is 64"):
        await client(url).completions.create(model="m", prompt="y" * 400, max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="100 in the completion") as info:
        await client(url).completions.create(model="m", prompt="hi", max_tokens=100)
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "max_tokens"


async def test_embeddings_are_deterministic_unit_vectors(start_sim: Start) -> None:
    url = await start_sim("--kind", "encoder", "--embedding-dim", "64")
    c = client(url)
    r = await c.embeddings.create(model="m", input=["alpha", "beta", "alpha"])  # base64 on wire
    vecs = [d.embedding for d in r.data]
    assert [len(v) for v in vecs] == [64, 64, 64]
    assert vecs[0] == pytest.approx(vecs[2]) and vecs[0] != pytest.approx(vecs[1])
    assert math.isclose(math.sqrt(sum(v * v for v in vecs[0])), 1.0, rel_tol=1e-5)
    floats = await c.embeddings.create(model="m", input="alpha", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vecs[0], abs=1e-6)
    assert r.usage.prompt_tokens == 2 + 1 + 2
    short = await c.embeddings.create(model="m", input="alpha", dimensions=8)
    assert len(short.data[0].embedding) == 8
    async with aiohttp.ClientSession() as s:
        body = {"model": "m", "input": "alpha", "encoding_format": "base64"}
        async with s.post(url + "/v1/embeddings", json=body) as resp:
            raw = base64.b64decode((await resp.json())["data"][0]["embedding"])
    assert list(struct.unpack("<64f", raw)) == pytest.approx(vecs[0], abs=1e-6)
    with pytest.raises(openai.BadRequestError, match="does not support Chat"):
        await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


async def test_decoder_refuses_embeddings(start_sim: Start) -> None:
    url = await start_sim()
    with pytest.raises(openai.BadRequestError, match="does not support Embeddings"):
        await client(url).embeddings.create(model="m", input="x")


async def test_models_and_unknown_model(start_sim: Start) -> None:
    url = await start_sim("--served-model-name", "qwen", "qwen-alias", "--max-model-len", "4096")
    models = await client(url).models.list()
    assert [m.id for m in models.data] == ["qwen", "qwen-alias"]
    r = await client(url).completions.create(model="qwen-alias", prompt="hi", max_tokens=1)
    assert r.model == "qwen-alias"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        await client(url).completions.create(model="other", prompt="hi", max_tokens=1)


async def test_full_queue_answers_429_with_openai_error(start_sim: Start) -> None:
    # One running slot, one queue place, and requests slow enough to still be running.
    url = await start_sim("--max-num-seqs", "1", "--max-queue", "1", "--time-scale", "1",
                          "--step-overhead-s", "0.05")
    c = client(url)
    body = {"model": "m", "prompt": "hi", "max_tokens": 200}
    running = asyncio.create_task(c.completions.create(**body))  # type: ignore[call-overload]
    await _until(url, lambda m: m["vllm:num_requests_running"] == 1)
    waiting = asyncio.create_task(c.completions.create(**body))  # type: ignore[call-overload]
    m = await _until(url, lambda m: m["vllm:num_requests_waiting"] == 1)
    assert m["vllm:kv_cache_usage_perc"] > 0
    with pytest.raises(openai.RateLimitError) as info:
        await c.completions.create(**body)  # type: ignore[call-overload]
    err = info.value.body
    assert isinstance(err, dict) and err["code"] == "rate_limit_exceeded"
    assert "max_num_seqs=1" in err["message"]
    for task in (running, waiting):
        task.cancel()
    await asyncio.gather(running, waiting, return_exceptions=True)
    # Cancelled clients free their slots: the engine is idle again.
    await _until(url, lambda m: m["vllm:num_requests_running"] == 0
                 and m["vllm:num_requests_waiting"] == 0)


async def test_fail_rate_answers_500(start_sim: Start) -> None:
    url = await start_sim("--fail-rate", "1")
    with pytest.raises(openai.InternalServerError, match="simulated engine failure"):
        await client(url).completions.create(model="m", prompt="hi", max_tokens=1)
    ok = await start_sim("--fail-rate", "0")
    await client(ok).completions.create(model="m", prompt="hi", max_tokens=1)


async def test_slow_start_keeps_health_503_then_200(start_sim: Start) -> None:
    url = await start_sim("--slow-start", "0.4")
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/health") as r:
            assert r.status == 503
        with pytest.raises(openai.APIStatusError, match="loading"):
            await client(url).completions.create(model="m", prompt="hi", max_tokens=1)
        await asyncio.sleep(0.45)
        async with s.get(url + "/health") as r:
            assert r.status == 200


async def test_api_key_is_required_when_set(start_sim: Start) -> None:
    url = await start_sim("--api-key", "secret")
    with pytest.raises(openai.AuthenticationError):
        await client(url).models.list()
    models = await openai.AsyncOpenAI(base_url=url + "/v1", api_key="secret").models.list()
    assert models.data[0].id == "m"


async def test_ollama_dialect_health_paths(start_sim: Start) -> None:
    url = await start_sim("--dialect", "ollama")
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/") as r:
            assert await r.text() == "Ollama is running"
        async with s.get(url + "/api/tags") as r:
            assert (await r.json())["models"][0]["name"] == "m"


async def _until(url: str, check: Callable[[dict[str, float]], bool]) -> dict[str, float]:
    for _ in range(500):
        m = await metrics(url)
        if check(m):
            return m
        await asyncio.sleep(0.01)
    raise AssertionError(f"metrics never matched: {m}")
