"""The key scoping matrix: a key opens its own deployment and nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
from gateway_harness import Deployed, Harness

# Both ways a request can reach the gateway: `a3s serve`'s own lane and plain ASGI.
pytestmark = pytest.mark.parametrize("gateway_lane", ["fast", "asgi"], indirect=True)

CHAT: dict[str, Any] = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}


def assert_openai_error(resp: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.fixture
async def two(harness: Harness) -> tuple[Deployed, Deployed]:
    ra = await harness.replica(model="alpha")
    rb = await harness.replica(model="beta")
    return harness.deploy("alpha", [ra]), harness.deploy("beta", [rb], namespace="team-b")


async def test_matrix_on_the_path_endpoint(
    harness: Harness, two: tuple[Deployed, Deployed]
) -> None:
    alpha, beta = two
    url = f"/d/{alpha.namespace}/alpha/v1/chat/completions"
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        own = await http.post(url, json=CHAT, headers={"Authorization": f"Bearer {alpha.key}"})
        assert own.status_code == 200, own.text

        assert_openai_error(await http.post(url, json=CHAT), 401, "missing_api_key")
        assert_openai_error(
            await http.post(url, json=CHAT, headers={"Authorization": "Basic abc"}),
            401, "missing_api_key",
        )
        wrong = assert_openai_error(
            await http.post(url, json=CHAT, headers={"Authorization": "Bearer sk-a3s-nope"}),
            401, "invalid_api_key",
        )
        assert "not valid" in str(wrong["message"])
        foreign = assert_openai_error(
            await http.post(url, json=CHAT, headers={"Authorization": f"Bearer {beta.key}"}),
            403, "forbidden",
        )
        assert foreign["type"] == "permission_error"
        unknown = await http.post(
            "/d/team-a/gamma/v1/chat/completions", json=CHAT,
            headers={"Authorization": f"Bearer {alpha.key}"},
        )
        assert_openai_error(unknown, 404, "model_not_found")
        # Models listing is behind the key too.
        assert_openai_error(await http.get(f"/d/{alpha.namespace}/alpha/v1/models"), 401,
                            "missing_api_key")
        assert_openai_error(
            await http.get(f"/d/{alpha.namespace}/alpha/v1/models",
                           headers={"Authorization": f"Bearer {beta.key}"}),
            403, "forbidden",
        )

        harness.revoke(alpha)  # the controller calls invalidate(): effective at once
        revoked = assert_openai_error(
            await http.post(url, json=CHAT, headers={"Authorization": f"Bearer {alpha.key}"}),
            401, "invalid_api_key",
        )
        assert "revoked" in str(revoked["message"])
    assert two[1].replicas[0].hits["chat"] == 0


async def test_the_key_in_api_key_or_x_api_key_headers(
    harness: Harness, two: tuple[Deployed, Deployed]
) -> None:
    """Azure OpenAI SDKs send `api-key`, Anthropic-style clients `x-api-key`: the same key
    checks, and neither header reaches the replica."""
    alpha, beta = two
    url = f"/d/{alpha.namespace}/alpha/v1/chat/completions"
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        for header in ("api-key", "x-api-key", "X-API-Key"):
            own = await http.post(url, json=CHAT, headers={header: alpha.key})
            assert own.status_code == 200, own.text
            assert_openai_error(await http.post(url, json=CHAT, headers={header: "sk-a3s-no"}),
                                401, "invalid_api_key")
            assert_openai_error(await http.post(url, json=CHAT, headers={header: beta.key}),
                                403, "forbidden")
        assert_openai_error(await http.post(url, json=CHAT, headers={"api-key": ""}), 401,
                            "missing_api_key")
        # A bearer token, when sent, is the one that counts.
        both = await http.post(url, json=CHAT, headers={"Authorization": "Bearer sk-a3s-no",
                                                        "x-api-key": alpha.key})
        assert_openai_error(both, 401, "invalid_api_key")
    seen = alpha.replicas[0].header_names
    assert "content-type" in seen and not seen & {"api-key", "x-api-key", "authorization"}


async def test_matrix_on_bare_v1_by_model(harness: Harness, two: tuple[Deployed, Deployed]) -> None:
    alpha, beta = two
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        def auth(dep: Deployed) -> dict[str, str]:
            return {"Authorization": f"Bearer {dep.key}"}

        ok = await http.post("/v1/chat/completions", json=CHAT, headers=auth(alpha))
        assert ok.status_code == 200
        assert_openai_error(
            await http.post("/v1/chat/completions", json=CHAT, headers=auth(beta)), 403,
            "forbidden",
        )
        assert_openai_error(
            await http.post("/v1/completions", json={**CHAT, "model": "gamma"},
                            headers=auth(alpha)),
            404, "model_not_found",
        )
        assert_openai_error(
            await http.post("/v1/embeddings", json={"model": "alpha", "input": "x"},
                            headers={"Authorization": "Bearer sk-a3s-forged"}),
            401, "invalid_api_key",
        )


async def test_openai_client_raises_its_own_exceptions(
    harness: Harness, two: tuple[Deployed, Deployed]
) -> None:
    alpha, beta = two
    with pytest.raises(openai.AuthenticationError):
        await harness.client(alpha, key="sk-a3s-wrong").chat.completions.create(**CHAT)
    with pytest.raises(openai.PermissionDeniedError):
        await harness.client(alpha, key=beta.key).chat.completions.create(**CHAT)
    answer = await harness.client(alpha).chat.completions.create(**CHAT)
    assert answer.choices[0].message.content


async def test_a_deleted_deployment_is_gone(harness: Harness) -> None:
    r = await harness.replica(model="gone")
    dep = harness.deploy("gone", [r], status="deleted")
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        await harness.client(dep).chat.completions.create(model="gone", messages=[])


async def test_a_key_made_elsewhere_is_found_without_invalidate(harness: Harness) -> None:
    """Another platform process created the deployment: no invalidate() reached us, yet
    the first request with its key finds it (a miss re-reads a snapshot older than 0.1 s)."""
    r = await harness.replica(model="late")
    await harness.client(
        harness.deploy("warm", [await harness.replica(model="warm")])
    ).models.list()  # a snapshot is in hand now
    harness.gateway.invalidate = lambda: None  # type: ignore[method-assign]
    dep = harness.deploy("late", [r])
    await asyncio.sleep(0.15)
    models = [m.id async for m in harness.client(dep).models.list()]
    assert models == ["late"]


async def test_wrong_method_unknown_endpoint_and_oversized_body_answer_in_openai_shape(
    harness: Harness, two: tuple[Deployed, Deployed]
) -> None:
    alpha, _ = two
    auth = {"Authorization": f"Bearer {alpha.key}"}
    base = f"/d/{alpha.namespace}/alpha/v1"
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        wrong = await http.get(base + "/chat/completions", headers=auth)
        assert_openai_error(wrong, 405, "method_not_allowed")
        assert wrong.headers["allow"] == "POST"
        assert_openai_error(await http.post(base + "/fine_tuning/jobs", json={}, headers=auth),
                            404, "unknown_endpoint")
        limit = harness.settings.max_body_bytes
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * (limit + 1)}]}
        too_big = assert_openai_error(
            await http.post(base + "/chat/completions", json=big, headers=auth),
            413, "body_too_large",
        )
        assert str(limit) in str(too_big["message"])
        assert str(len(httpx.Request("POST", "/", json=big).content)) in str(too_big["message"])

        async def big_pieces() -> Any:
            for _ in range(3):
                yield b"x" * limit

        chunked_big = assert_openai_error(
            await http.post(base + "/chat/completions", content=big_pieces(), headers=auth),
            413, "body_too_large")
        assert f"over {limit} bytes (sent chunked)" in str(chunked_big["message"])

        # A body sent in pieces without Content-Length (chunked) is read whole.
        async def pieces() -> Any:
            text = httpx.Request("POST", "/", json=CHAT).content
            for i in range(0, len(text), 7):
                yield text[i : i + 7]

        chunked = await http.post(base + "/chat/completions", content=pieces(),
                                  headers={**auth, "content-type": "application/json"})
        assert chunked.status_code == 200, chunked.text
        assert chunked.json()["choices"][0]["message"]["content"]


async def test_a_refused_credential_is_named_by_kind_never_echoed(
    harness: Harness, two: tuple[Deployed, Deployed]
) -> None:
    alpha, _ = two
    url = f"/d/{alpha.namespace}/alpha/v1/chat/completions"
    refused = {
        "sk-a3s-Zq9XvW4kLpGt": "API key",
        "a3s-admin-Qj7YpR2mNcFz": "admin token",
        "rel-admin-Hx5TbK8wVdJq": "not an A3S API key",
    }
    harness.revoke(alpha)
    refused[alpha.key] = "revoked"
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        for secret, kind in refused.items():
            error = assert_openai_error(
                await http.post(url, json=CHAT, headers={"Authorization": f"Bearer {secret}"}),
                401, "invalid_api_key",
            )
            message = str(error["message"])
            assert kind in message
            # No piece of the credential beyond the public prefix of generated ones: no run
            # of 3 characters of the fixed ones above; for the generated (random) key, runs
            # of 5 and its head: a random 43-character key shares some 3-character run with
            # the message in about 1 run of 70 ("a3s", "key"), by chance, not by echo.
            body = secret.removeprefix("sk-a3s-").removeprefix("a3s-admin-")
            n = 5 if secret == alpha.key else 3
            assert secret[:len(secret) - len(body) + 3] not in message, message
            pieces = {body[i:i + n] for i in range(len(body) - n + 1)}
            assert not [p for p in pieces if p in message], message


async def test_a_small_body_over_a_small_limit_is_refused_whichever_way_it_came(
    harness: Harness, two: tuple[Deployed, Deployed]
) -> None:
    """Under `a3s serve` a small body is handed to the gateway whole (fast_lane.py), not read
    through `receive`: the limit holds for it all the same, and nothing reaches a replica."""
    alpha, _ = two
    harness.gateway.settings = harness.settings.model_copy(update={"max_body_bytes": 100})
    url = f"/d/{alpha.namespace}/alpha/v1/chat/completions"
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 200}]}
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        refused = await http.post(url, json=big, headers={"Authorization": f"Bearer {alpha.key}"})
        error = assert_openai_error(refused, 413, "body_too_large")
        size = len(httpx.Request("POST", "/", json=big).content)
        assert f"request body is {size} bytes; at most 100 are accepted" == error["message"]
        small = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
        ok = await http.post(url, json=small, headers={"Authorization": f"Bearer {alpha.key}"})
        assert ok.status_code == 200, ok.text
    assert alpha.replicas[0].hits["chat"] == 1
