"""`a3s_core/api/fast_lane.py`: the data plane's own lane through `A3SHttpProtocol`.

A data-plane request is answered without ASGI, and what reaches the client is what uvicorn
writes for the same answer: the same bytes for whole, streamed (chunked) and fixed-length
answers, keep-alive and `connection: close`, pipelined requests in order, 100-continue,
uvicorn's 500 when the handler fails, the disconnect seen by `receive`. Everything else
(other paths, HEAD, an app without `data_plane`, `limit_concurrency`) still goes uvicorn's
way."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from http_server_kit import Writes, asgi_body, serving, talk

from a3s_core.api.fast_lane import Exchange
from a3s_core.gateway.asgi import Headers, Receive, Reply, Route

Scope = dict[str, Any]
JSON = (b"content-type", b"application/json")

# The same answers, given to the fast lane's Reply and to uvicorn as ASGI messages.
WHOLE = (200, [JSON, (b"x-a3s-replica", b"r-1")], b'{"ok": true}')
STREAM = (200, [(b"content-type", b"text/event-stream")], [b"one", b"two", b"three"])


class Plane:
    """A data plane whose answer the request's x-request-id chooses."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], Route]] = []
        self.given: list[bytes | None] = []  # the body handed over whole, or None
        self.disconnects: list[str] = []
        self.release = asyncio.Event()

    async def answer(self, method: str, headers: dict[str, str], route: Route,
                     receive: Receive, reply: Reply, body: bytes | None = None) -> None:
        self.seen.append((method, headers, route))
        self.given.append(body)
        if body is None:  # not all in as the request started: read it as it comes
            body = b""
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.disconnects.append("before the body")
                    return
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        mode = headers.get("x-request-id", "whole")
        if mode == "whole":
            await reply.whole(*WHOLE)
        elif mode == "echo":
            await reply.whole(200, [], b"echo:" + body)
        elif mode == "stream":
            await reply.start(STREAM[0], STREAM[1])
            for part in STREAM[2]:
                await reply.chunk(part)
            await reply.end()
        elif mode == "fixed":
            await reply.start(200, [(b"content-length", b"6")])
            await reply.chunk(b"abc")
            await reply.end(b"def")
        elif mode == "raise":
            raise RuntimeError("the handler failed")
        elif mode == "raise-after-start":
            await reply.start(200, [])
            await reply.chunk(b"partial")
            raise RuntimeError("the handler failed mid-answer")
        elif mode == "silent":
            return
        elif mode == "bad-header":
            await reply.whole(200, [(b"x-bad", b"a\nb")], b"x")
        elif mode == "slow":
            await self.release.wait()
            await reply.whole(200, [], b"late")
        elif mode == "late-stream":  # the head now, the body 0.5 s later
            await reply.start(200, [])
            await asyncio.sleep(0.5)
            await reply.chunk(b"late")
            await reply.end()
        elif mode == "wait-leave":
            await reply.start(200, [])
            await reply.chunk(b"first")
            message = await receive()  # the next message: the client leaving
            self.disconnects.append(message["type"])


async def ordinary(scope: Scope, receive: Any, send: Any) -> None:
    """uvicorn's way: the same answers as plain ASGI, at paths the data plane leaves alone."""
    if scope["type"] != "http":
        return
    body = await asgi_body(receive)
    ORDINARY.append((scope["method"], scope["path"]))
    if scope["path"] == "/ordinary/stream":
        await send({"type": "http.response.start", "status": STREAM[0], "headers": STREAM[1]})
        for part in STREAM[2]:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    status, headers, out = 200, [], b"echo:" + body
    if scope["path"] == "/ordinary/whole":
        status, headers, out = WHOLE
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


ORDINARY: list[tuple[str, str]] = []


class App:
    def __init__(self, plane: Plane | None) -> None:
        self.data_plane = plane

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await ordinary(scope, receive, send)


@pytest.fixture(autouse=True)
def _fresh_ordinary() -> None:
    ORDINARY.clear()  # what reached the ordinary way, per test


@pytest.fixture
def plane() -> Plane:
    return Plane()


@pytest.fixture
async def port(plane: Plane) -> AsyncIterator[int]:
    async with serving(App(plane)) as p:
        yield p


def post(path: str, mode: str, body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return (b"POST %s HTTP/1.1\r\nhost: a\r\nx-request-id: %s\r\ncontent-length: %d\r\n%s\r\n%s"
            % (path.encode(), mode.encode(), len(body), extra, body))


def undated(answer: bytes) -> bytes:
    return b"\r\n".join(line for line in answer.split(b"\r\n") if not line.startswith(b"date:"))


async def test_a_whole_answer_is_uvicorns_bytes_in_one_write(port: int, plane: Plane) -> None:
    fast = await talk(port, post("/v1/chat/completions", "whole"), WHOLE[2])
    assert len(Writes.log) == 1 and Writes.log[0] == fast
    slow = await talk(port, post("/ordinary/whole", "whole"), WHOLE[2])
    assert undated(fast) == undated(slow)
    assert fast.startswith(b"HTTP/1.1 200 OK\r\n") and b"server: uvicorn\r\n" in fast
    method, headers, route = plane.seen[0]
    assert (method, route.path) == ("POST", "/v1/chat/completions")
    assert headers["x-request-id"] == "whole" and headers["host"] == "a"
    assert plane.given == [b"{}"]  # the body was in: handed over whole
    assert ORDINARY == [("POST", "/ordinary/whole")]  # the fast one never reached ASGI


async def test_a_streamed_answer_is_uvicorns_chunked_bytes(port: int) -> None:
    fast = await talk(port, post("/d/team/m/v1/completions", "stream"), b"0\r\n\r\n")
    slow = await talk(port, post("/ordinary/stream", "stream"), b"0\r\n\r\n")
    assert undated(fast) == undated(slow)
    head, _, body = fast.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n0\r\n\r\n"
    # The head rides with the first piece (the recorder saw the fast answer first).
    assert Writes.log[0].endswith(b"\r\n\r\n3\r\none\r\n")


async def test_a_fixed_length_answer_in_pieces(port: int) -> None:
    got = await talk(port, post("/v1/completions", "fixed"), b"abcdef")
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"content-length: 6" in head and b"transfer-encoding" not in head
    assert body == b"abcdef"


async def test_keep_alive_across_both_lanes_on_one_connection(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i, path in enumerate(["/v1/embeddings", "/ordinary/echo", "/v1/embeddings"]):
        body = b"%d" % i
        writer.write(post(path, "echo", body))
        got = b""
        async with asyncio.timeout(5):
            while not got.endswith(b"echo:" + body):
                got += await reader.read(65536)
        assert got.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" not in got
    writer.close()
    assert ORDINARY == [("POST", "/ordinary/echo")]


async def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    raw = (post("/v1/chat/completions", "echo", b"1") + post("/ordinary/echo", "echo", b"2")
           + post("/v1/chat/completions", "stream") + post("/v1/chat/completions", "echo", b"4"))
    got = await talk(port, raw, b"echo:4")
    answers = got.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(answers) == 4
    assert answers[0].endswith(b"echo:1") and answers[1].endswith(b"echo:2")
    assert answers[2].endswith(b"5\r\nthree\r\n0\r\n\r\n") and answers[3].endswith(b"echo:4")


async def test_http_10_and_connection_close_end_the_connection(port: int) -> None:
    for raw in (post("/v1/completions", "whole").replace(b"HTTP/1.1", b"HTTP/1.0"),
                post("/v1/completions", "whole", extra=b"connection: close\r\n")):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        async with asyncio.timeout(5):
            got = await reader.read()  # until the server closes
        writer.close()
        assert got.endswith(WHOLE[2]) and b"connection: close\r\n" in got


async def test_100_continue_goes_out_when_the_body_is_read(port: int, plane: Plane) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/embeddings HTTP/1.1\r\nhost: a\r\nx-request-id: echo\r\n"
                 b"content-length: 2\r\nexpect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"ok")
    got = b""
    async with asyncio.timeout(5):
        while not got.endswith(b"echo:ok"):
            got += await reader.read(65536)
    writer.close()
    assert plane.given == [None]  # read through receive(), which sent the 100 Continue


async def test_a_large_body_arrives_whole(port: int, plane: Plane) -> None:
    body = b"x" * (300 * 1024)  # several times uvicorn's read high-water mark
    got = await talk(port, post("/v1/completions", "echo", body), b"echo:" + body, timeout=10)
    assert got.endswith(b"echo:" + body)
    assert plane.given == [None]  # still coming as the request started: read as it came


@pytest.mark.parametrize("mode", ["raise", "silent", "bad-header"])
async def test_a_handler_that_fails_before_answering_gets_uvicorns_500(
        port: int, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/v1/completions", mode))
        async with asyncio.timeout(5):
            got = await reader.read()  # uvicorn closes after its 500
        writer.close()
    assert got.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert got.endswith(b"\r\n\r\nInternal Server Error") and b"connection: close" in got
    assert any("ASGI" in r.getMessage() for r in caplog.records)


async def test_a_handler_that_fails_mid_answer_cuts_the_connection(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/v1/completions", "raise-after-start"))
    async with asyncio.timeout(5):
        got = await reader.read()
    writer.close()
    assert got.endswith(b"7\r\npartial\r\n")  # no last chunk: the client sees it cut short


async def test_receive_says_when_the_client_has_left(port: int, plane: Plane) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/v1/completions", "wait-leave"))
    async with asyncio.timeout(5):
        got = b""
        while b"first" not in got:
            got += await reader.read(65536)
    writer.close()
    async with asyncio.timeout(5):
        while not plane.disconnects:
            await asyncio.sleep(0.01)
    assert plane.disconnects == ["http.disconnect"]


async def test_head_and_other_paths_go_uvicorns_way(port: int, plane: Plane) -> None:
    got = await talk(port, b"HEAD /v1/models HTTP/1.1\r\nhost: a\r\n\r\n", b"\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\n")
    await talk(port, post("/v1/deployments", "echo"), b"echo:")
    await talk(port, post("/d/team", "echo"), b"echo:")  # not a data-plane path either
    assert ORDINARY == [("HEAD", "/v1/models"), ("POST", "/v1/deployments"),
                        ("POST", "/d/team")]
    assert plane.seen == []


async def test_an_escaped_path_is_routed_as_uvicorn_unescapes_it(port: int,
                                                                  plane: Plane) -> None:
    await talk(port, post("/d/team%2Da/m/v1/chat/completions", "whole"), WHOLE[2])
    route = plane.seen[0][2]
    assert (route.namespace, route.name, route.path) == ("team-a", "m", "/v1/chat/completions")


@pytest.mark.parametrize("config", [{"app_without_plane": True}, {"limit_concurrency": 100}])
async def test_without_a_data_plane_or_with_a_concurrency_limit_all_goes_through_asgi(
        config: dict[str, Any]) -> None:
    plane = Plane()
    app = App(None if config.pop("app_without_plane", False) else plane)
    async with serving(app, **config) as p:
        await talk(p, post("/v1/embeddings", "echo", b"x"), b"echo:x")
    assert ORDINARY == [("POST", "/v1/embeddings")] and plane.seen == []


async def access_lines(plane: Plane, raws: list[bytes]) -> list[str]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    async with serving(App(plane), access_log=True) as p:
        access = logging.getLogger("uvicorn.access")  # (it does not propagate)
        keep = Keep()
        access.addHandler(keep)
        level = access.level
        access.setLevel(logging.INFO)  # (the server's log_level is warning)
        try:
            for raw in raws:
                await talk(p, raw, WHOLE[2])
        finally:
            access.removeHandler(keep)
            access.setLevel(level)
    return [r.getMessage() for r in records]


async def test_the_access_log_line_is_uvicorns(plane: Plane) -> None:
    lines = await access_lines(plane, [post("/v1/completions?x=1", "whole"),
                                       post("/ordinary/whole?x=1", "whole")])
    assert [line.split(" - ", 1)[1] for line in lines] == [
        '"POST /v1/completions?x=1 HTTP/1.1" 200', '"POST /ordinary/whole?x=1 HTTP/1.1" 200']
    assert all(line.startswith("127.0.0.1:") for line in lines)


async def test_the_access_log_names_the_client_a_trusted_proxy_forwards(plane: Plane) -> None:
    """Behind a proxy uvicorn trusts (127.0.0.1 by default) its log names the client from
    X-Forwarded-For; the fast lane's lines say the same as the ordinary way's."""
    forwarded = b"x-forwarded-for: 203.0.113.7\r\n"
    lines = await access_lines(plane, [post("/v1/completions", "whole", extra=forwarded),
                                       post("/ordinary/whole", "whole", extra=forwarded)])
    assert [line.split(" - ", 1)[0] for line in lines] == ["203.0.113.7:0", "203.0.113.7:0"]


async def test_a_graceful_shutdown_waits_for_an_answer_in_flight(plane: Plane) -> None:
    async with serving(App(plane)) as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p)
        writer.write(post("/v1/completions", "slow"))
        async with asyncio.timeout(5):
            while not plane.seen:
                await asyncio.sleep(0.01)
        asyncio.get_running_loop().call_later(0.3, plane.release.set)
    # serving() has returned: the server waited for the answer before it stopped.
    async with asyncio.timeout(5):
        got = await reader.read()
    writer.close()
    assert got.endswith(b"late") and b"connection: close" in got


async def test_no_reference_cycle_per_request(port: int) -> None:
    """A cycle among a request's objects would leave every request to the collector."""
    await talk(port, post("/v1/completions", "whole"), WHOLE[2])
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(20):
            await talk(port, post("/v1/completions", "whole"), WHOLE[2])
        await asyncio.sleep(0.05)
        gc.collect()
        held = [o for o in gc.garbage if isinstance(o, Exchange)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert held == []


async def test_a_head_whose_body_is_late_is_not_held_back(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/v1/completions", "late-stream"))
    head = b""
    async with asyncio.timeout(0.3):  # the body comes after 0.5 s
        while b"\r\n\r\n" not in head:
            head += await reader.read(65536)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    rest = b""
    async with asyncio.timeout(5):
        while not rest.endswith(b"0\r\n\r\n"):
            rest += await reader.read(65536)
    writer.close()
    assert rest == b"4\r\nlate\r\n0\r\n\r\n"


async def test_a_whole_answer_waits_while_the_client_is_not_reading() -> None:
    """Writes paused (the client reads slower than it is answered): the answer waits for
    the transport to drain, as uvicorn's send does, instead of piling up in memory."""
    written: list[bytes] = []
    drained = asyncio.Event()

    class Transport:
        def write(self, data: bytes) -> None:
            written.append(data)

        def is_closing(self) -> bool:
            return False

    class Flow:
        write_paused = True

        async def drain(self) -> None:
            await drained.wait()

    class Protocol:
        transport, flow, url = Transport(), Flow(), b"/v1/models"
        access_log = False
        completed = 0

        class server_state:  # uvicorn's attribute name
            default_headers: list[tuple[bytes, bytes]] = []

        def on_response_complete(self) -> None:
            self.completed += 1

    protocol = Protocol()
    route = Route("/v1/models", "GET")
    exchange = Exchange(protocol, Plane(), "GET", route, {}, True, False)  # type: ignore[arg-type]
    answering = asyncio.ensure_future(exchange.whole(200, [], b"{}"))
    await asyncio.sleep(0.05)
    assert written == [] and not answering.done()
    drained.set()
    await asyncio.wait_for(answering, 5)
    assert written[0].endswith(b"content-length: 2\r\n\r\n{}") and protocol.completed == 1


def test_the_exchange_keeps_the_reply_contract() -> None:
    """What the gateway calls on a Reply, the Exchange has (a Reply subclass, all four)."""
    for name in ("start", "chunk", "end", "whole"):
        assert getattr(Exchange, name) is not getattr(Reply, name)
    assert Headers == list[tuple[bytes, bytes]]


@pytest.mark.parametrize("target", [b"*", b"http://a3s.example", b"http://a3s.example/v1/models",
                                    b"/d/team%FF/m/v1/models", b"/v1/models%"])
async def test_odd_request_targets_get_the_answer_uvicorn_gives(target: bytes) -> None:
    """Targets without a path, absolute ones, escapes that decode to non-ASCII: the lane
    must answer each exactly as a server without it does (the status line compared)."""
    raw = b"GET %s HTTP/1.1\r\nhost: a\r\nx-request-id: whole\r\n\r\n" % target
    firsts = []
    for app in (App(Plane()), App(None)):
        async with serving(app) as p:
            reader, writer = await asyncio.open_connection("127.0.0.1", p)
            writer.write(raw)
            async with asyncio.timeout(5):
                line = await reader.readline()
            writer.close()
        firsts.append(line)
    assert firsts[0] == firsts[1] and firsts[0].startswith(b"HTTP/1.1 ")
