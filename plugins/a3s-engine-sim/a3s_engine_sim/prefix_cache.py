"""Automatic prefix caching, modelled on vLLM's (V1): the prompt is cut into blocks of
`BLOCK` tokens, each block named by a hash chained from the one before it (so a block's
hash stands for the whole prefix up to its end), and blocks already computed are reused
instead of prefilled again. Only full blocks are cached, and at least the last prompt
token is always computed (the engine needs its logits), as in vLLM.

Capacity is the replica's KV cache: the blocks running requests reserve come first;
cached blocks fill what is left and the least recently used are evicted to make room.

Statistics count tokens, as vLLM's counters do: `queries` (prompt tokens looked up) and
`hits` (of those, found cached).

Also here: `PrefillLane`. Prefill is compute-bound and a GPU runs one forward pass at a
time, so the prefills of concurrent requests share its compute instead of overlapping for
free; a replica that is sent more long prompts than it can prefill builds a queue, which is
what makes routing matter. The lane is FIFO and O(1): each prefill is booked after the
ones already booked.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence

CHARS_PER_TOKEN = 4  # the simulator's tokenizer (model.estimate_tokens)


def block_hashes(text: str, block_tokens: int) -> tuple[bytes, ...]:
    """The chained hashes of the full blocks of `text` (a partial last block has none)."""
    step = block_tokens * CHARS_PER_TOKEN
    out: list[bytes] = []
    parent = b""
    for end in range(step, len(text) + 1, step):
        chunk = text[end - step:end].encode("utf-8", "surrogatepass")
        parent = hashlib.blake2b(parent + chunk, digest_size=16).digest()
        out.append(parent)
    return tuple(out)


class PrefixCache:
    def __init__(self, capacity_blocks: int, block_tokens: int, enabled: bool = True) -> None:
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self.enabled = enabled
        self._blocks: OrderedDict[bytes, None] = OrderedDict()  # LRU first
        self.queries = 0  # prompt tokens looked up
        self.hits = 0  # of those, found cached
        self.evicted = 0  # blocks

    def __len__(self) -> int:
        return len(self._blocks)

    def cached_tokens(self, hashes: Sequence[bytes], prompt_tokens: int) -> int:
        """Tokens of this prompt already cached (the longest run of leading blocks held),
        counted in the statistics; the blocks found become most recently used."""
        self.queries += prompt_tokens
        if not self.enabled or prompt_tokens <= 1:
            return 0
        usable = min(len(hashes), (prompt_tokens - 1) // self.block_tokens)
        found = 0
        blocks = self._blocks
        for h in hashes[:usable]:
            if h not in blocks:
                break
            found += 1
        for h in reversed(hashes[:found]):  # see insert() for the order
            blocks.move_to_end(h)
        tokens = found * self.block_tokens
        self.hits += tokens
        return tokens

    def insert(self, hashes: Sequence[bytes], room_blocks: int) -> None:
        """The prompt's blocks were computed: keep them (most recent last), then evict the
        least recently used until at most `room_blocks` are held."""
        if not self.enabled:
            return
        blocks = self._blocks
        # Last block first, so the first block ends most recent: eviction then takes a
        # prefix's tail before its head, and what is left stays usable (vLLM frees a
        # request's blocks in reverse for the same reason).
        for h in reversed(hashes):
            blocks[h] = None
            blocks.move_to_end(h)
        self.trim(room_blocks)

    def trim(self, room_blocks: int) -> None:
        """Evict least recently used blocks until at most `room_blocks` remain."""
        blocks = self._blocks
        room = max(0, min(room_blocks, self.capacity_blocks))
        while len(blocks) > room:
            blocks.popitem(last=False)
            self.evicted += 1

    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0


class PrefillLane:
    """FIFO booking of the GPU's prefill compute (wall seconds)."""

    def __init__(self, serial: bool = True) -> None:
        self.serial = serial
        self._free_at = 0.0

    def book(self, wall_s: float) -> float:
        """Seconds from now until a prefill of `wall_s` that starts now may end."""
        if not self.serial:
            return wall_s
        now = time.monotonic()
        start = max(now, self._free_at)
        self._free_at = start + wall_s
        return self._free_at - now
