"""A small HTTP client for the control plane, shared by the CLI commands."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from a3s_core.settings import Settings


class CliError(Exception):
    """Printed as one readable line; the command exits non-zero."""


class NotFound(CliError):
    """The platform answered 404."""


# Ids (`dep-1a2b…`) and names are DNS labels; anything else cannot name a deployment.
REF = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def default_url() -> str:
    return os.environ.get("A3S_URL") or "http://127.0.0.1:8080"


def with_scheme(url: str) -> str:
    """`127.0.0.1:8080` as curl takes it: http:// unless a scheme is given."""
    return url if "://" in url else f"http://{url}"


def path(*segments: str) -> str:
    """`/v1/deployments/<id>/…` with each segment percent-escaped, so an id such as
    `x/../dep-1` stays one segment and names no other object."""
    return "/" + "/".join(quote(s, safe="") for s in segments)


def check_ref(ref: str) -> str:
    """A deployment id or name as typed on the command line, or a CliError saying why not."""
    if not ref:
        raise CliError("a deployment id or name is required (got an empty string)")
    if not REF.fullmatch(ref):
        raise CliError(
            f"{ref!r} is not a deployment id or name: those are lower-case letters, digits "
            "and '-', at most 63 characters"
        )
    return ref


def check_namespace(namespace: str) -> str:
    if not REF.fullmatch(namespace):
        raise CliError(
            f"namespace {namespace!r} is not a valid namespace: a DNS-1123 label, lower-case "
            "letters, digits and '-', at most 63 characters"
        )
    return namespace


def token_file() -> Path:
    return Path(Settings().data_dir) / "admin-token"  # a local `a3s serve` wrote it


def default_token() -> str | None:
    if tok := os.environ.get("A3S_TOKEN") or os.environ.get("A3S_ADMIN_TOKEN"):
        return tok
    path = token_file()
    return path.read_text().strip() if path.exists() else None


class Client:
    def __init__(self, url: str | None, token: str | None, timeout: float = 30.0) -> None:
        self.url = with_scheme(url or default_url()).rstrip("/")
        self.url_given = bool(url or os.environ.get("A3S_URL"))
        given = token or os.environ.get("A3S_TOKEN") or os.environ.get("A3S_ADMIN_TOKEN")
        self.token = token or default_token()
        self.token_from = None if given or not self.token else token_file()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def unreachable(self, exc: BaseException) -> CliError:
        """Nothing answers at the URL. Without --url or A3S_URL, say how to give one: an
        `a3s serve --port 9000` elsewhere is not found by itself (its token is)."""
        hint = (
            "; `a3s serve` on another address or port? pass --url or set A3S_URL to the "
            "address it printed"
            if not self.url_given
            else ""
        )
        return CliError(f"cannot reach the platform at {self.url}: {exc}{hint}")

    def token_hint(self) -> str:
        """Where the admin token came from, or where it was looked for."""
        if self.token_from is not None:
            return f" (read from {self.token_from}; pass --token or set A3S_TOKEN)"
        if self.token is None:
            return (
                f" (none given and none in {token_file()}: pass --token or set A3S_TOKEN "
                "to the token `a3s serve` printed)"
            )
        return ""

    def ws_url(self, path: str) -> str:
        return self.url.replace("http://", "ws://").replace("https://", "wss://") + path

    def request(self, method: str, path: str, *, answers: str | None = None, **kw: Any) -> Any:
        """The JSON answer; an error status raises CliError, unless the body still holds
        the `answers` key (a plan that failed for some models still has every model)."""
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc
        if r.status_code >= 400 and answers:
            try:
                body = r.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and answers in body:
                return body
        if r.status_code >= 400:
            try:
                err = r.json().get("error", {})
                msg = err.get("message") or r.text
            except ValueError:
                msg = r.text
            if r.status_code == 401:
                msg += self.token_hint()
            if r.status_code == 404 and msg == "Not Found":  # no such API path at all
                msg += (
                    f" (no API at {self.url}: --url / A3S_URL is the address `a3s serve` "
                    "printed, without a path)"
                )
            raise (NotFound if r.status_code == 404 else CliError)(f"{r.status_code}: {msg}")
        return r.json() if r.content else None

    def deployment(self, ref: str, namespace: str | None = None) -> dict[str, Any]:
        """The deployment `ref` names: its id, or its name (in `namespace`, or in the only
        namespace that has a live deployment of that name)."""
        check_ref(ref)
        if namespace is not None:
            check_namespace(namespace)
        try:
            d: dict[str, Any] = self.request("GET", path("v1", "deployments", ref))
        except NotFound:
            pass
        else:
            if namespace is None or d["namespace"] == namespace:
                return d
        where = f" in namespace {namespace!r}" if namespace else ""
        params: dict[str, Any] = {"namespace": namespace} if namespace else {}
        rows = self.request("GET", "/v1/deployments", params=params)
        found = [d for d in rows if d["name"] == ref]
        if not found:  # a deleted one is still shown by `get` (the newest of that name)
            rows = self.request(
                "GET", "/v1/deployments", params={**params, "includeDeleted": "true"}
            )
            found = sorted(
                (d for d in rows if d["name"] == ref), key=lambda d: str(d["updatedAt"])
            )[-1:]
        if not found:
            raise CliError(f"no deployment with id or name {ref!r}{where}")
        spaces = sorted({d["namespace"] for d in found})
        if len(spaces) > 1:
            raise CliError(
                f"{ref!r} names a deployment in several namespaces ({', '.join(spaces)}); "
                "pick one with -n NAMESPACE"
            )
        return self.request("GET", path("v1", "deployments", found[0]["id"]))  # type: ignore[no-any-return]
