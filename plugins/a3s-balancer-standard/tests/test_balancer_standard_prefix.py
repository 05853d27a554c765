"""prefix-aware on hand-made loads and request bodies: locality while the replica keeps
up, spill when it does not, membership, and the memory bound."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from a3s_balancer_standard import PrefixAware

from a3s_core.types import ReplicaLoad, RouteRequest

CHAT = "/v1/chat/completions"


def rep(rid: str, queue: int = 0, url: str | None = None, **kw: object) -> ReplicaLoad:
    return ReplicaLoad(  # type: ignore[arg-type]
        replica_id=rid, url=url or f"http://{rid}", running=queue, metrics_fresh=True, **kw
    )


def chat(system: str, user: str, members: frozenset[str] = frozenset("abcd"),
         **extra: object) -> RouteRequest:
    body = json.dumps({"model": "m", **extra, "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": user}]})
    return RouteRequest("dep", CHAT, body.encode(), members)


SYSTEM = [f"You are assistant number {i}. " + "Follow the house rules. " * 200
          for i in range(8)]


def test_requests_sharing_a_prefix_go_to_the_same_replica_while_it_keeps_up() -> None:
    policy = PrefixAware()
    replicas = [rep("a"), rep("b"), rep("c"), rep("d")]
    first = {i: policy.pick(replicas, chat(s, "hello")).replica_id for i, s in enumerate(SYSTEM)}
    # New prefixes spread (least-queue, then the emptiest index): all four get some.
    assert set(first.values()) == {"a", "b", "c", "d"}
    for round_ in range(5):
        for i, s in enumerate(SYSTEM):
            # Other fields before the prompt differ; the question differs: same replica.
            req = chat(s, f"question {round_}-{i}", temperature=0.1 * round_)
            assert policy.pick(replicas, req).replica_id == first[i]


def test_they_spread_when_that_replica_is_overloaded() -> None:
    policy = PrefixAware(abs_slack=4, rel_slack=0.5)
    calm = [rep("a"), rep("b"), rep("c"), rep("d")]
    home = policy.pick(calm, chat(SYSTEM[0], "hi")).replica_id
    # Within the slack (queue 4 against 0): still home.
    loads = [rep(r, queue=4 if r == home else 0) for r in "abcd"]
    assert policy.pick(loads, chat(SYSTEM[0], "again")).replica_id == home
    # Beyond it: least-queue among the others.
    hot = [rep(r, queue=9 if r == home else (1 if r < "c" else 2)) for r in "abcd"]
    spilled = policy.pick(hot, chat(SYSTEM[0], "more"))
    assert spilled.replica_id != home and queue_of_(spilled) == min(map(queue_of_, hot))
    # The spill seeded a second copy: while home stays hot, the prefix follows the spill.
    assert policy.pick(hot, chat(SYSTEM[0], "and more")).replica_id == spilled.replica_id
    # The relative slack: at a shortest queue of 20, a queue of 29 is within 50 %.
    busy = [rep(r, queue=29 if r == home else 20) for r in "abcd"]
    policy2 = PrefixAware()
    policy2.pick([rep(home)], chat(SYSTEM[1], "x", members=frozenset("abcd")))
    assert policy2.pick(busy, chat(SYSTEM[1], "y")).replica_id == home
    hotter = [rep(r, queue=31 if r == home else 20) for r in "abcd"]
    assert policy2.pick(hotter, chat(SYSTEM[1], "z")).replica_id != home


def queue_of_(r: ReplicaLoad) -> float:
    return r.waiting + r.running


def test_a_replica_that_leaves_takes_its_index_entries_with_it() -> None:
    policy = PrefixAware()
    replicas = [rep("a"), rep("b")]
    homes = {policy.pick(replicas, chat(s, "q", frozenset("ab"))).replica_id for s in SYSTEM}
    assert homes == {"a", "b"} and policy.entries("b") > 0
    # b is ejected for a while (a member, not offered): its entries stay.
    policy.pick([rep("a")], chat(SYSTEM[0], "q", frozenset("ab")))
    assert policy.entries("b") > 0
    # b leaves the deployment: gone from the index at the next pick.
    policy.pick([rep("a"), rep("c")], chat(SYSTEM[0], "q", frozenset("ac")))
    assert "b" not in policy.tracked() and policy.entries("b") == 0
    # a restarts at a new URL: a new process with an empty cache.
    assert policy.entries("a") > 0
    policy.pick([rep("a", url="http://a-again"), rep("c")],
                chat("unrelated " * 100, "q", frozenset("ac")))
    held = policy.entries("a")
    policy.pick([rep("a", url="http://a-again"), rep("c")],
                chat(SYSTEM[0], "q", frozenset("ac")))
    # SYSTEM[0] was a's before the restart; now it is a new prefix like any other.
    assert policy.entries("a") <= held + 80


def test_index_memory_stays_within_its_bound_under_unique_prompts() -> None:
    rng = random.Random(7)
    policy = PrefixAware(max_entries=2_000)
    replicas = [rep("a", kv_capacity_tokens=10**9), rep("b", kv_capacity_tokens=10**9)]
    for i in range(3_000):
        text = "".join(rng.choice("abcdefghij ") for _ in range(2_000))
        policy.pick(replicas, chat(f"unique {i} {text}", "q", frozenset("ab")))
        assert policy.entries("a") <= 2_000 and policy.entries("b") <= 2_000
    assert policy.entries("a") + policy.entries("b") > 3_000  # it was filling up, not idle


def test_entries_age_out_at_the_replicas_kv_capacity() -> None:
    # 4 000 tokens of KV ≈ 16 000 bytes of prompt: a handful of 3 KB prompts, not more.
    policy = PrefixAware()
    only = [rep("a", kv_capacity_tokens=4_000)]
    policy.pick(only, chat(SYSTEM[0], "q", frozenset("a")))
    early = policy.hashes(chat(SYSTEM[0], "q"))[0]
    for i in range(20):
        policy.pick(only, chat(f"other {i} " + "filler " * 500, "q", frozenset("a")))
    assert policy._index["a"].matched(early) == 0
    assert policy._index["a"].charged <= 16_000


def test_head_bytes_bounds_the_work_per_request() -> None:
    policy = PrefixAware(head_bytes=4096, chunk_bytes=256, max_chunk_bytes=1024)
    hashes, charges = policy.hashes(chat("x" * 100_000, "q"))
    # 256 + 512 + 1024 × 3 + the last 256 bytes of the head: 6 hashes, whatever the size.
    assert len(hashes) == 6 and sum(charges[:-1]) == 4096 - 256
    assert sum(charges) >= 100_000  # the whole prompt is charged against the capacity


def test_without_a_request_or_for_other_paths_it_is_least_queue() -> None:
    policy = PrefixAware()
    replicas = [rep("a", queue=3), rep("b", queue=1), rep("c", queue=2)]
    assert policy.pick(replicas).replica_id == "b"
    emb = RouteRequest("dep", "/v1/embeddings", b'{"input": "hello"}', frozenset("abc"))
    assert Counter(policy.pick(replicas, emb).replica_id for _ in range(5)) == {"b": 5}
    with pytest.raises(ValueError):
        policy.pick([])


def test_prompt_head_starts_at_the_prompt() -> None:
    a = RouteRequest("d", CHAT, b'{"model":"x","temperature":0.5,"messages":[{"c":"hi"}]}')
    b = RouteRequest("d", CHAT, b'{"model":"y","messages":[{"c":"hi"}],"n":2}')
    assert a.prompt_head(14) == b.prompt_head(14) == b'"messages":[{"'
    c = RouteRequest("d", "/v1/completions", b'{"prompt":"once upon","model":"x"}')
    assert c.prompt_head(100).startswith(b'"prompt"')
    assert RouteRequest("d", CHAT, b"not json").prompt_head(3) == b"not"
