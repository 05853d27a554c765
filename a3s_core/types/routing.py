"""What a balancer may know about the request it routes (`Balancer.pick`'s second
argument). A plain frozen dataclass, not pydantic: one is built per request on the hot
path, and nothing here needs validating (the gateway fills it)."""

from __future__ import annotations

from dataclasses import dataclass

# Keys whose value carries the prompt, by endpoint family (chat, completions, embeddings).
_PROMPT_KEYS = (b'"messages"', b'"prompt"', b'"input"')


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One request as the gateway is about to route it.

    deployment_id: the deployment (one balancer instance serves one deployment).
    path:          the OpenAI path asked for, e.g. "/v1/chat/completions".
    body:          the request body exactly as the client sent it (JSON bytes; b"" for GET).
                   The gateway does not parse it; a policy that needs the prompt reads
                   `prompt_head()` rather than decoding the whole body on every request.
    members:       ids of every replica of the deployment this gateway currently knows as
                   ready, whether offered to this pick or not (an ejected replica, or the
                   one that just failed, is a member that is not offered). A replica absent
                   from `members` has left: state kept for it may be dropped.
    attempt:       0 for the first pick, 1 for the retry after a failure (the failed
                   replica is then not offered).
    worker:        which gateway worker process is routing (0 with one worker).
    workers:       how many gateway workers share the balancing figures. With more than one,
                   each `ReplicaLoad.in_flight` counts only this worker's requests and
                   `peer_in_flight` the others' (as last shared), so a policy that keeps
                   its own per-replica state should expect to see only 1/workers of the
                   traffic.
    """

    deployment_id: str
    path: str
    body: bytes = b""
    members: frozenset[str] = frozenset()
    attempt: int = 0
    worker: int = 0
    workers: int = 1

    def prompt_head(self, limit: int) -> bytes:
        """At most `limit` bytes of the body, starting where the prompt does (the
        "messages", "prompt" or "input" key, whichever comes first within the first
        4 KiB; from the start of the body when none is found there). Two requests that
        share a prompt prefix share a prefix here, even when fields before the prompt
        (model, temperature …) differ. The text is still JSON-escaped; that is the same
        for equal prompts, which is all a hash needs."""
        body = self.body
        start = -1
        for key in _PROMPT_KEYS:
            at = body.find(key, 0, 4096)  # the prompt key sits near the top in practice
            if at >= 0 and (start < 0 or at < start):
                start = at
        if start < 0:
            start = 0
        return body[start:start + limit]
