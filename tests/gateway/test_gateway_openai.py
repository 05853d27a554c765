"""The official `openai` client against the gateway: every data-plane call, both routings."""

from __future__ import annotations

import httpx
import openai
import pytest
from gateway_harness import Harness

# Both ways a request can reach the gateway: `a3s serve`'s own lane and plain ASGI.
pytestmark = pytest.mark.parametrize("gateway_lane", ["fast", "asgi"], indirect=True)


async def test_chat_non_streaming_through_path_endpoint(harness: Harness) -> None:
    r = await harness.replica(model="chat", tokens=3)
    dep = harness.deploy("chat", [r])
    client = harness.client(dep)
    answer = await client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "tok0 tok1 tok2 "
    assert answer.usage is not None and answer.usage.completion_tokens == 3
    assert r.hits["chat"] == 1


async def test_chat_streaming_arrives_chunk_by_chunk(harness: Harness) -> None:
    r = await harness.replica(model="chat", tokens=5)
    dep = harness.deploy("chat", [r])
    client = harness.client(dep)
    stream = await client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    pieces = [c.choices[0].delta.content async for c in stream if c.choices]
    assert pieces == ["tok0 ", "tok1 ", "tok2 ", "tok3 ", "tok4 "]


async def test_stream_is_not_buffered(harness: Harness) -> None:
    """The first chunk reaches the client while the replica is still generating the rest."""
    r = await harness.replica(model="chat", tokens=3, token_s=0.5)
    dep = harness.deploy("chat", [r])
    client = harness.client(dep)
    stream = await client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    first = await stream.__anext__()
    assert first.choices[0].delta.content == "tok0 "
    assert r.running == 1  # still generating tok1 and tok2: nothing waited for the whole
    rest = [c.choices[0].delta.content async for c in stream]
    assert rest == ["tok1 ", "tok2 "]


async def test_text_completions_streaming_and_not(harness: Harness) -> None:
    r = await harness.replica(model="base", tokens=2)
    dep = harness.deploy("base", [r])
    client = harness.client(dep)
    whole = await client.completions.create(model="base", prompt="Once")
    assert whole.choices[0].text == "tok0 tok1 "
    stream = await client.completions.create(model="base", prompt="Once", stream=True)
    assert [c.choices[0].text async for c in stream] == ["tok0 ", "tok1 "]


async def test_embeddings_for_an_embedding_engine(harness: Harness) -> None:
    r = await harness.replica(model="bge")
    dep = harness.deploy("bge", [r], engine="fake-embed")
    client = harness.client(dep)
    out = await client.embeddings.create(model="bge", input=["a", "bbb"])
    assert [d.embedding[0] for d in out.data] == [1.0, 3.0]
    # The embedding engine does not serve chat: the gateway says so without a round trip.
    with pytest.raises(openai.NotFoundError, match="does not serve /v1/chat/completions"):
        await client.chat.completions.create(model="bge", messages=[])
    assert r.hits["chat"] == 0


async def test_models_lists_the_deployment(harness: Harness) -> None:
    r = await harness.replica(model="chat")
    dep = harness.deploy("chat", [r])
    client = harness.client(dep)
    models = [m async for m in client.models.list()]
    assert [m.id for m in models] == ["chat"]
    assert models[0].owned_by == "team-a"
    assert (await client.models.retrieve("chat")).id == "chat"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("other")


async def test_bare_v1_routes_by_model_field(harness: Harness) -> None:
    r1 = await harness.replica(model="one")
    r2 = await harness.replica(model="two")
    one = harness.deploy("one", [r1])
    two = harness.deploy("two", [r2], namespace="team-b")
    for dep, replica in ((one, r1), (two, r2)):
        client = openai.AsyncOpenAI(base_url=harness.base_url + "/v1", api_key=dep.key,
                                    max_retries=0)
        answer = await client.chat.completions.create(model=dep.name, messages=[])
        assert answer.model == dep.name
        assert replica.hits["chat"] == 1
        assert [m.id async for m in client.models.list()] == [dep.name]
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        resp = await http.post("/v1/chat/completions", json={"messages": []},
                               headers={"Authorization": f"Bearer {one.key}"})
        assert resp.status_code == 400
        assert resp.json()["error"]["param"] == "model"
        resp = await http.post("/v1/chat/completions", content=b"[1, 2",
                               headers={"Authorization": f"Bearer {one.key}"})
        assert resp.status_code == 400


async def test_host_based_routing_with_a_domain(harness: Harness) -> None:
    harness.settings.domain = "a3s.internal"
    r1 = await harness.replica(model="qwen")
    r2 = await harness.replica(model="qwen")
    # The same name in two namespaces: each key reaches its own deployment.
    a = harness.deploy("qwen", [r1], namespace="team-a")
    b = harness.deploy("qwen", [r2], namespace="team-b")
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        for dep, replica in ((a, r1), (b, r2)):
            resp = await http.post(
                "/v1/chat/completions", json={"model": "qwen", "messages": []},
                headers={"Authorization": f"Bearer {dep.key}", "Host": "qwen.a3s.internal"},
            )
            assert resp.status_code == 200, resp.text
            assert resp.headers["x-a3s-replica"] == dep.replica_ids[0]
            assert replica.hits["chat"] == 1
        other = harness.deploy("other", [r1])
        resp = await http.post(
            "/v1/chat/completions", json={"model": "qwen", "messages": []},
            headers={"Authorization": f"Bearer {other.key}", "Host": "qwen.a3s.internal:443"},
        )
        assert resp.status_code == 403
        resp = await http.get("/v1/models", headers={"Authorization": f"Bearer {a.key}",
                                                     "Host": "nope.a3s.internal"})
        assert resp.status_code == 404
