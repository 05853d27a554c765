"""`a3s_core/api/server.py`: uvicorn as `a3s serve` runs it. An answer's head goes out in
the same socket write as its first body bytes, and nothing else about HTTP changes: a head
whose body is late still goes out at once, HEAD and 100-continue answers, large bodies,
chunked streams, and answers on connections that close."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from http_server_kit import Writes, asgi_body, serving, talk

from a3s_core.api import server
from a3s_core.api.server import JOIN_UNDER, A3SHttpProtocol
from a3s_core.gateway.asgi import WHOLE, AsgiReply

Scope = dict[str, Any]

BIG = b"x" * (JOIN_UNDER + 10)


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = await asgi_body(receive)
    path = scope["path"]
    if path.startswith("/whole/") or path.startswith("/plain/"):  # the same answer two ways
        status, headers, out = ANSWERS[path.split("/")[2]]
        ext = scope.get("extensions", {}).get(WHOLE)
        if path.startswith("/whole/"):
            sent = ext["send"](status, headers, out)
            WholeSent.results.append(sent)
            if sent:
                return
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})
        return
    if path == "/late":  # the head now, the body 0.5 s later
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"4")]})
        await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"late"})
        return
    if path == "/stream":  # chunked, three pieces
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"two", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    out = BIG if path == "/big" else b"echo:" + body
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


ANSWERS: dict[str, tuple[int, list[tuple[bytes, bytes]], bytes]] = {
    "ok": (200, [(b"content-type", b"application/json"), (b"x-a3s-replica", b"r-1")],
           b'{"ok": true}'),
    "error": (503, [(b"content-type", b"application/json"), (b"retry-after", b"5")],
              b'{"error": {"message": "down"}}'),
    "empty": (200, [], b""),
    "big": (200, [(b"content-type", b"text/plain")], BIG),
    # Ones the extension leaves to the ordinary path:
    "framing": (200, [(b"connection", b"close")], b"x"),
    "upper": (200, [(b"X-Upper", b"1")], b"x"),
}


class WholeSent:
    results: list[bool] = []


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with serving(app) as p:
        yield p


async def test_a_plain_answer_is_one_write(port: int) -> None:
    got = await talk(port, b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhi",
                         b"echo:hi")
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\necho:hi")
    assert len(Writes.log) == 1 and Writes.log[0] == got


async def test_keep_alive_answers_each_one_write(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in range(3):
        writer.write(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\n\r\n%d" % i)
        got = b""
        while not got.endswith(b"echo:%d" % i):
            got += await reader.read(65536)
    writer.close()
    assert len(Writes.log) == 3


async def test_a_head_whose_body_is_late_is_not_held_back(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /late HTTP/1.1\r\nhost: a\r\n\r\n")
    head = b""
    async with asyncio.timeout(0.3):  # the body comes after 0.5 s
        while b"\r\n\r\n" not in head:
            head += await reader.read(65536)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    rest = await asyncio.wait_for(reader.read(65536), 2)
    assert rest == b"late"
    writer.close()
    assert Writes.log == [head, b"late"]


async def test_head_request_gets_its_head(port: int) -> None:
    got = await talk(port, b"HEAD /x HTTP/1.1\r\nhost: a\r\n\r\n", b"\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 5\r\n" in got
    assert got.endswith(b"\r\n\r\n")


async def test_100_continue_goes_out_before_the_answer(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n"
                 b"expect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"ok")
    got = b""
    while not got.endswith(b"echo:ok"):
        got += await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    assert got.startswith(b"HTTP/1.1 200 OK\r\n")
    assert Writes.log == [interim, got]


async def test_a_large_body_goes_whole_after_its_head(port: int) -> None:
    got = await talk(port, b"GET /big HTTP/1.1\r\nhost: a\r\n\r\n", BIG)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body == BIG
    assert len(Writes.log) == 1


async def test_a_chunked_stream_is_unchanged(port: int) -> None:
    got = await talk(port, b"GET /stream HTTP/1.1\r\nhost: a\r\n\r\n", b"0\r\n\r\n")
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n0\r\n\r\n"
    # The head rides with the first piece; the others go as they come.
    assert len(Writes.log) == 4 and Writes.log[0].endswith(b"3\r\none\r\n")


async def test_an_answer_on_a_closing_connection_is_whole(port: int) -> None:
    got = await talk(
        port, b"POST /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi",
        b"echo:hi")
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"echo:hi")
    assert b"connection: close" in got


async def test_no_reference_cycle_per_request(port: int) -> None:
    """A cycle between a request's objects would leave every request to the collector."""
    await talk(port, b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhi", b"echo:hi")
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(20):
            await talk(port, b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhi",
                           b"echo:hi")
        await asyncio.sleep(0.05)
        gc.collect()
        held = [o for o in gc.garbage if type(o).__name__ in ("_HeadHeld", "RequestResponseCycle")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert held == []


def test_settle_heap_freezes_what_startup_left() -> None:
    thresholds = gc.get_threshold()
    try:
        server.settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (server.YOUNG_THRESHOLD, *thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_run_serves_with_the_protocols_and_settles_the_heap() -> None:
    """`server.run` on a bound socket: the app answers through A3SHttpProtocol, and the
    heap is frozen once the app has started."""
    thresholds = gc.get_threshold()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port_ = sock.getsockname()[1]
    seen: dict[str, Any] = {}

    async def probe(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen["frozen"] = gc.get_freeze_count()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def client() -> bytes:
        for _ in range(200):
            try:
                return await talk(port_, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", b"ok")
            except OSError:
                await asyncio.sleep(0.02)
        raise AssertionError("the server did not come up")

    import threading

    answer: list[bytes] = []
    srv: list[server.Server] = []
    original = server.Server.startup

    async def startup(self: server.Server, sockets: Any = None) -> None:
        srv.append(self)
        await original(self, sockets)

    def drive() -> None:
        answer.append(asyncio.run(client()))
        srv[0].should_exit = True

    try:
        server.Server.startup = startup  # type: ignore[method-assign]
        t = threading.Thread(target=drive)
        t.start()
        server.run(probe, sockets=[sock], log_level="warning")
        t.join(10)
    finally:
        server.Server.startup = original  # type: ignore[method-assign]
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sock.close()
    assert answer and answer[0].endswith(b"\r\n\r\nok")
    assert srv[0].config.http_protocol_class is A3SHttpProtocol
    assert seen["frozen"] > 0


def _without_date(answer: bytes) -> bytes:
    return b"".join(line for line in answer.splitlines(keepends=True)
                    if not line.startswith(b"date: "))


@pytest.mark.parametrize(("name", "closing"), [
    ("ok", False), ("ok", True), ("error", False), ("empty", False), ("big", False),
    ("framing", False), ("upper", False),
])
async def test_a_whole_answer_is_the_same_bytes_in_one_write(
    port: int, name: str, closing: bool,
) -> None:
    conn = b"connection: close\r\n" if closing else b""
    answers = []
    for way in ("plain", "whole"):
        Writes.log = []
        WholeSent.results = []
        raw = b"GET /%s/%s HTTP/1.1\r\nhost: a\r\n%s\r\n" % (way.encode(), name.encode(), conn)
        _, _, out = ANSWERS[name]
        got = await talk(port, raw, out if out else b"\r\n\r\n")
        assert got.endswith(out)
        answers.append((_without_date(got), len(Writes.log), list(WholeSent.results)))
    (plain, _, _), (whole, writes, sent) = answers
    assert whole == plain
    assert sent == [name not in ("framing", "upper")]
    assert writes == 1


async def test_a_whole_answer_writes_uvicorns_access_log_line() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    lines = []
    async with serving(app, access_log=True) as p:
        access = logging.getLogger("uvicorn.access")  # (it does not propagate)
        keep = Keep()
        access.addHandler(keep)
        level = access.level
        access.setLevel(logging.INFO)  # (the server's log_level is warning)
        try:
            for way in ("plain", "whole"):
                records.clear()
                await talk(p, b"GET /%s/ok?x=1 HTTP/1.1\r\nhost: a\r\n\r\n"
                               % way.encode(), b"true}")
                lines.append([r.getMessage().replace(way, "WAY").split(" - ", 1)[1]
                              for r in records])
        finally:
            access.removeHandler(keep)
            access.setLevel(level)
    assert lines[0] == lines[1] and len(lines[0]) == 1
    assert lines[0][0] == '"GET /WAY/ok?x=1 HTTP/1.1" 200'


async def test_head_requests_are_left_to_the_ordinary_path(port: int) -> None:
    WholeSent.results = []
    got = await talk(port, b"HEAD /whole/ok HTTP/1.1\r\nhost: a\r\n\r\n", b"\r\n\r\n")
    assert WholeSent.results == [False]
    assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"\r\n\r\n")


async def test_reply_uses_the_extension_and_falls_back_without_it() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    calls: list[tuple[int, list[tuple[bytes, bytes]], bytes]] = []

    def whole(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        calls.append((status, headers, body))
        return status == 200

    scope = {"extensions": {WHOLE: {"send": whole}}}
    reply = AsgiReply(send, scope)
    await reply.whole(200, [(b"a", b"1")], b"hi")
    assert calls == [(200, [(b"a", b"1")], b"hi")] and sent == [] and reply.started
    refused = AsgiReply(send, scope)  # the server declines: the ordinary two messages
    await refused.whole(404, [], b"no")
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert (b"content-length", b"2") in sent[0]["headers"]
    sent.clear()
    await AsgiReply(send).whole(200, [], b"ok")  # a server without it
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


async def test_pipelined_requests_are_answered_whole_and_in_order(port: int) -> None:
    """Two requests in one packet: uvicorn queues the second until the first is answered;
    a whole answer must hand over to it as uvicorn's own send does."""
    WholeSent.results = []
    one = b"GET /whole/ok HTTP/1.1\r\nhost: a\r\n\r\n"
    two = b"GET /whole/error HTTP/1.1\r\nhost: a\r\n\r\n"
    got = await talk(port, one + two, ANSWERS["error"][2])
    first, second = got.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 OK") and first.endswith(ANSWERS["ok"][2])
    assert second.startswith(b"503 ") and second.endswith(ANSWERS["error"][2])
    assert WholeSent.results == [True, True]
