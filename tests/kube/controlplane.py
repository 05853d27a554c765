"""A real Kubernetes control plane on loopback for tests: etcd, kube-apiserver (RBAC, a
service-account token issuer, TLS), kube-scheduler and kwok (simulated nodes and pod
lifecycles), from the binaries tests/kube/build.sh builds.

`ControlPlane(workdir).start()` → `.kubeconfig` is an admin kubeconfig (client certificate in
`system:masters`). Nothing listens beyond 127.0.0.1, and kwok gives pods addresses in
127.1.0.0/16, so anything that dials a pod stays on this machine. Without a kube-controller-
manager there is no namespace, service-account or node lifecycle controller: the
ServiceAccount and TaintNodesByCondition admission plugins are off, and RealKube's
`delete_namespace` finalizes namespaces itself.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KWOK_ANNOTATION = "kwok.x-k8s.io/node"  # nodes with it =fake are run by kwok
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def versions() -> dict[str, str]:
    out = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def bin_dir() -> Path:
    root = os.environ.get("A3S_KUBE_CACHE") or str(Path.home() / ".cache" / "a3s-kube")
    return Path(root) / versions()["KUBE_VERSION"] / "bin"


BINARIES = ("etcd", "kube-apiserver", "kube-scheduler", "kwok", "kwok-stages")


def missing_reason() -> str | None:
    """Why the control plane cannot start here, or None."""
    missing = [b for b in BINARIES if not (bin_dir() / b).exists()]
    if not missing:
        return None
    if shutil.which("go") is None:
        return (f"no Kubernetes control plane: Go is not installed, so {', '.join(missing)} "
                f"cannot be built (tests/kube/build.sh builds them into {bin_dir()})")
    return (f"no Kubernetes control plane: {', '.join(missing)} not built in {bin_dir()}; "
            "run tests/kube/build.sh (or `tox -e kube`)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """A CA, the API server's serving certificate (127.0.0.1, localhost), an admin client
    certificate (O=system:masters) and the service-account signing key pair."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key",
             "-out", "ca.crt", "-subj", "/CN=a3s-test-ca", cwd=d)
    (d / "serving.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n"
    )
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subj, ext in (("apiserver", "/CN=kube-apiserver", "serving.ext"),
                            ("admin", "/O=system:masters/CN=a3s-test-admin", "client.ext")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", subj, cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{name}.crt", cwd=d)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def kubeconfig_text(server: str, ca: Path, user: dict[str, str]) -> str:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "a3s-test",
        "clusters": [{"name": "a3s-test", "cluster": {
            "server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": "a3s-test", "user": user}],
        "contexts": [{"name": "a3s-test", "context": {"cluster": "a3s-test",
                                                       "user": "a3s-test"}}],
    }, indent=1)


class ControlPlane:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.bin = bin_dir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.etcd_url = ""
        self.server = ""
        self.kubeconfig = self.dir / "admin.kubeconfig"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout_s: float = 120.0) -> ControlPlane:
        pki = self.dir / "pki"
        make_pki(pki)
        client, peer, secure = free_port(), free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", [
            "--name", "a3s", "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"a3s=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ])
        self._wait(lambda: _http_ok(f"{self.etcd_url}/health"), "etcd", timeout_s)
        self.server = f"https://127.0.0.1:{secure}"
        self._spawn("kube-apiserver", self._apiserver_args(secure))
        self.kubeconfig.write_text(kubeconfig_text(self.server, pki / "ca.crt", {
            "client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key"),
        }))
        self._wait(self._ready, "kube-apiserver /readyz", timeout_s)
        self._spawn("kube-scheduler", [
            "--kubeconfig", str(self.kubeconfig),
            "--authentication-kubeconfig", str(self.kubeconfig),
            "--authorization-kubeconfig", str(self.kubeconfig),
            "--leader-elect=false", "--bind-address", "127.0.0.1",
            "--secure-port", str(free_port()),
        ])
        stages = sorted(str(p) for p in (self.bin / "kwok-stages").glob("*.yaml"))
        self._spawn("kwok", [
            "--kubeconfig", str(self.kubeconfig),
            "--config", ",".join(stages),
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            "--cidr", "127.1.0.0/16", "--node-ip", "127.0.0.1",
            "--node-lease-duration-seconds", "40",
            "--server-address", f"127.0.0.1:{free_port()}",
        ])
        return self

    def _apiserver_args(self, port: int, *extra: str) -> list[str]:
        pki = self.dir / "pki"
        return [
            "--etcd-servers", self.etcd_url,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            # the endpoints reconciler refuses a loopback address; nothing in-cluster
            # needs the `kubernetes` Service's endpoints here
            "--endpoint-reconciler-type", "none",
            "--secure-port", str(port),
            "--tls-cert-file", str(pki / "apiserver.crt"),
            "--tls-private-key-file", str(pki / "apiserver.key"),
            "--client-ca-file", str(pki / "ca.crt"),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(pki / "sa.pub"),
            "--service-account-signing-key-file", str(pki / "sa.key"),
            "--api-audiences", "https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range", "10.96.0.0/16",
            # No kube-controller-manager runs: no service-account controller (so pods need
            # no `default` ServiceAccount), and no node lifecycle controller to lift the
            # not-ready taint TaintNodesByCondition puts on every new node.
            "--disable-admission-plugins", "ServiceAccount,TaintNodesByCondition",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--cert-dir", str(self.dir / f"apiserver-certs-{port}"),
            *extra,
        ]

    def uncached_apiserver(self, timeout_s: float = 120.0) -> Path:
        """A second kube-apiserver on the same etcd, without the watch cache: watches go to
        etcd, so one resumed from a compacted revision gets etcd's answer (410 Gone) at once,
        as on a busy cluster where the cache's window has moved past it. Its admin
        kubeconfig; started once."""
        path = self.dir / "uncached.kubeconfig"
        if "kube-apiserver-uncached" in self.procs:
            return path
        port = free_port()
        self._spawn("kube-apiserver-uncached", self._apiserver_args(port, "--watch-cache=false"),
                    binary="kube-apiserver")
        pki = self.dir / "pki"
        server = f"https://127.0.0.1:{port}"
        path.write_text(kubeconfig_text(server, pki / "ca.crt", {
            "client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key"),
        }))
        self._wait(lambda: self.request("GET", "/readyz", server=server)[0] == 200,
                   "the uncached kube-apiserver", timeout_s)
        return path

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, args: list[str], binary: str | None = None) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
        self.procs[name] = subprocess.Popen(
            [str(self.bin / (binary or name)), *args], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=self.dir, preexec_fn=_die_with_parent,
        )

    def _wait(self, ok: Any, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}): "
                                       f"{self.log_tail(name)}")
            with contextlib.suppress(Exception):
                if ok():
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready after {timeout_s:.0f}s")

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _ready(self) -> bool:
        code, _ = self.request("GET", "/readyz")
        return code == 200

    # -- raw access (admin) ---------------------------------------------------------------

    def _ssl(self) -> Any:
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.dir / "pki" / "ca.crt"))
        pki = self.dir / "pki"
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json",
                server: str | None = None) -> tuple[int, Any]:
        """One admin call: (status, decoded JSON or text)."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request((server or self.server) + path, data=data, method=method,
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, context=self._ssl(), timeout=30) as resp:
                raw = resp.read()
                code = resp.status
        except urllib.error.HTTPError as exc:
            raw, code = exc.read(), exc.code
        try:
            return code, json.loads(raw)
        except ValueError:
            return code, raw.decode(errors="replace")

    def etcd(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """etcd's JSON gateway (/v3/kv/range, /v3/kv/compaction, …)."""
        req = urllib.request.Request(self.etcd_url + path, data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def compact(self) -> int:
        """Compact etcd to its current revision (what kube-apiserver does every 5 minutes):
        older resourceVersions are gone, and a watch from one is answered 410 Gone."""
        rev = int(self.etcd("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})
                  ["header"]["revision"])
        self.etcd("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        return rev


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, however it dies (kill -9, a CI
    timeout), so no etcd or kube-apiserver outlives it (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)
