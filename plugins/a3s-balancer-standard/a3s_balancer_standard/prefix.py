"""`prefix-aware`: send a request where its prompt's prefix is most likely cached.

vLLM and SGLang keep the KV blocks of prompts they have computed and skip the prefill of
any prefix they still hold, so a request that lands on the replica holding its system
prompt or its conversation so far gets its first token sooner and costs less GPU time.

The policy keeps, per replica, an approximate index of what that replica holds, built
from the requests it sent there itself (no engine cooperation needed):

- The prompt is read from the raw body (`RouteRequest.prompt_head`), at most `head_bytes`
  of it (16 KiB by default, ≈ 4k tokens), cut into chunks that start at `chunk_bytes`
  (256 B, ≈ 64 tokens) and double up to `max_chunk_bytes` (4 KiB). Their hashes are
  chained, so one hash stands for the whole prefix up to it (the engine's own block
  hashing, coarser). Hashing is Python's built-in hash of bytes: cheap, and the index
  never leaves the process. A pick costs ≈ 20 µs at the default head, ≈ 100 µs at 64 KiB
  (benchmarks/bench_prefix_hash.py; least-queue ≈ 3 µs).
- Each replica's index is an LRU bounded twice: by the replica's KV capacity (tokens from
  the plan × `BYTES_PER_TOKEN`; each request is charged its whole prompt, not just the
  part hashed, so that entries age out about when the engine would evict the blocks) and
  by `max_entries` hashes whatever the capacity (memory: ≈ 100 bytes an entry, so 4 MB a
  replica at the default 40 000).
- A replica that leaves the deployment (`RouteRequest.members`) or restarts at a new URL
  takes its index with it.

The choice: the replica holding the longest prefix wins, unless it is overloaded — its
queue (`queue_of`, as least-queue ranks) exceeds the shortest queue offered by more than
`max(abs_slack, rel_slack × shortest)`. Requests with no usable match (or whose match is
only on overloaded replicas) go least-queue, ties to the replica with the smallest index
(the most room for a new prefix). So shared prefixes stick to one replica while it keeps
up, and spill to others when it does not; the spill then seeds a second copy.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from a3s_balancer_standard.policies import _Rotating, queue_of
from a3s_core.types import ReplicaLoad, RouteRequest

BYTES_PER_TOKEN = 4  # JSON text of English prompts: ≈ 4 bytes a token
DEFAULT_CAPACITY_TOKENS = 200_000  # when the plan does not say (an 8B model on one A100)
PROMPT_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})


class _Index:
    """Chunk hashes one replica is thought to hold, least recently used first; each with
    the bytes of prompt it stands for."""

    __slots__ = ("capacity_bytes", "charged", "entries", "url")

    def __init__(self, url: str, capacity_bytes: int) -> None:
        self.url = url
        self.entries: OrderedDict[int, int] = OrderedDict()
        self.charged = 0
        self.capacity_bytes = capacity_bytes

    def matched(self, hashes: Sequence[int]) -> int:
        """How many leading hashes this replica holds."""
        entries = self.entries
        n = 0
        for h in hashes:
            if h not in entries:
                break
            n += 1
        return n

    def add(self, hashes: Sequence[int], charges: Sequence[int], max_entries: int) -> None:
        entries = self.entries
        # Last chunk first, so the first ends most recent and eviction takes a prefix's
        # tail before its head (what is left of a prefix stays matchable).
        for h, c in zip(reversed(hashes), reversed(charges), strict=True):
            old = entries.get(h)
            if old is None:
                entries[h] = c
                self.charged += c
            else:
                entries.move_to_end(h)
                if c > old:  # assigning an existing key keeps its place
                    entries[h] = c
                    self.charged += c - old
        while entries and (self.charged > self.capacity_bytes or len(entries) > max_entries):
            _, c = entries.popitem(last=False)
            self.charged -= c


class PrefixAware(_Rotating):
    """Longest cached prefix first, least-queue when that replica is overloaded."""

    name = "prefix-aware"

    def __init__(
        self,
        head_bytes: int = 16 * 1024,
        chunk_bytes: int = 256,
        max_chunk_bytes: int = 4096,
        max_entries: int = 40_000,
        abs_slack: float = 4.0,
        rel_slack: float = 0.5,
    ) -> None:
        super().__init__()
        if head_bytes < chunk_bytes or chunk_bytes < 16:
            raise ValueError(f"head_bytes ({head_bytes}) must be >= chunk_bytes "
                             f"({chunk_bytes}) >= 16")
        self.head_bytes = head_bytes
        self.chunk_bytes = chunk_bytes
        # Chunks double from chunk_bytes up to max_chunk_bytes: fine where prompts first
        # differ (which system prompt), coarser deeper in (how far a conversation goes),
        # so a 16 KiB head is 8 hashes, not 64, and a pick stays in the tens of µs.
        bounds: list[tuple[int, int]] = []
        start, size = 0, chunk_bytes
        while start < head_bytes:
            bounds.append((start, min(head_bytes, start + size)))
            start += size
            size = min(size * 2, max(max_chunk_bytes, chunk_bytes))
        self._bounds = tuple(bounds)
        self.max_entries = max_entries
        self.abs_slack = abs_slack
        self.rel_slack = rel_slack
        self._index: dict[str, _Index] = {}
        self._members: frozenset[str] | None = None

    # -- reading the request ----------------------------------------------------------

    def hashes(self, request: RouteRequest) -> tuple[list[int], list[int]]:
        """The chained chunk hashes of the prompt's head, and what each is charged (its
        chunk's bytes; the last also the rest of the body, which the head left out)."""
        head = request.prompt_head(self.head_bytes)
        hashes: list[int] = []
        charges: list[int] = []
        h = 0
        size = len(head)
        for start, end in self._bounds:
            if start >= size:
                break
            h = hash((h, head[start:end]))
            hashes.append(h)
            charges.append(min(end, size) - start)
        if charges:
            charges[-1] += max(0, len(request.body) - len(head))
        return hashes, charges

    # -- state ------------------------------------------------------------------------

    def _sync(self, replicas: Sequence[ReplicaLoad], request: RouteRequest) -> None:
        members = request.members
        if members and members is not self._members:
            self._members = members
            for gone in [rid for rid in self._index if rid not in members]:
                del self._index[gone]
        for r in replicas:
            idx = self._index.get(r.replica_id)
            if idx is None or idx.url != r.url:  # new, or restarted: an empty cache
                self._index[r.replica_id] = _Index(r.url, self._capacity(r))
            else:
                idx.capacity_bytes = self._capacity(r)

    @staticmethod
    def _capacity(r: ReplicaLoad) -> int:
        tokens = r.kv_capacity_tokens or DEFAULT_CAPACITY_TOKENS
        return tokens * BYTES_PER_TOKEN

    def entries(self, replica_id: str) -> int:
        """Hashes held for a replica (tests, introspection)."""
        idx = self._index.get(replica_id)
        return len(idx.entries) if idx else 0

    def tracked(self) -> set[str]:
        return set(self._index)

    # -- the pick ---------------------------------------------------------------------

    def pick(
        self, replicas: Sequence[ReplicaLoad], request: RouteRequest | None = None
    ) -> ReplicaLoad:
        if not replicas:
            raise ValueError("pick() needs at least one replica")
        queues = [queue_of(r) for r in replicas]
        if request is None or request.path not in PROMPT_PATHS or not request.body:
            return self._least_queue(replicas, queues)
        self._sync(replicas, request)
        hashes, charges = self.hashes(request)
        shortest = min(queues)
        limit = shortest + max(self.abs_slack, self.rel_slack * shortest)
        best, best_len = -1, 0
        for i, r in enumerate(replicas):
            if queues[i] > limit:
                continue
            n = self._index[r.replica_id].matched(hashes)
            if n > best_len or (n == best_len and n and queues[i] < queues[best]):
                best, best_len = i, n
        chosen = replicas[best] if best >= 0 else self._least_queue(replicas, queues)
        self._index[chosen.replica_id].add(hashes, charges, self.max_entries)
        return chosen

    def _least_queue(
        self, replicas: Sequence[ReplicaLoad], queues: Sequence[float]
    ) -> ReplicaLoad:
        """Fewest queued; among equals the one with the least indexed (most room for a
        new prefix), then in turn."""
        def size(r: ReplicaLoad) -> float:
            idx = self._index.get(r.replica_id)
            return float(idx.charged) if idx else 0.0

        ranked = sorted(((queues[i], float(r.in_flight), size(r)), i)
                        for i, r in enumerate(replicas))
        return self._first_of_ties(ranked, replicas)
