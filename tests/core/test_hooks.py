"""Every hook has a test here, and every hook is documented with its exact signature."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

from a3s_core import hookimpl, hookspecs
from a3s_core.contracts import (
    Balancer,
    Engine,
    LaunchContext,
    Runtime,
    ScalingRule,
    SchedulerStrategy,
)
from a3s_core.plugins import Plugins
from a3s_core.types import (
    AutoscalingSpec,
    Event,
    ModelProfile,
    ModelSpec,
    ScalingSignals,
    SizingPlan,
    Vote,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def hook_names() -> list[str]:
    return [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("a3s_")]


def test_every_hook_has_a_test() -> None:
    here = sys.modules[__name__]
    missing = [n for n in hook_names() if not hasattr(here, f"test_hook_{n}")]
    assert not missing, f"hooks without a test_hook_<name>: {missing}"


def test_every_hook_is_documented_with_its_signature() -> None:
    text = DOCS.read_text()
    for name in hook_names():
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"`{name}({params})`" in text, f"docs/plugins.md lacks `{name}({params})`"
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"


def _profile(model: str) -> ModelProfile:
    return ModelProfile(
        model=model,
        source="config",
        architecture="LlamaForCausalLM",
        model_type="llama",
        parameters=1000,
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_kv_heads=4,
        head_dim=16,
        intermediate_size=128,
        vocab_size=100,
        context_length=2048,
    )


def test_hook_a3s_model_profile(register_plugin: Any, a3s_plugins: Plugins) -> None:
    class P:
        @hookimpl(tryfirst=True)
        def a3s_model_profile(self, model: str, revision: str | None) -> ModelProfile | None:
            return _profile(model) if model.startswith("acme/") else None

    register_plugin(a3s_plugins, P(), "acme-profiles")
    assert a3s_plugins.model_profile("acme/tiny").parameters == 1000


def test_hook_a3s_size(register_plugin: Any, a3s_plugins: Plugins) -> None:
    plan = SizingPlan(
        model="acme/tiny",
        checkpoint="acme/tiny",
        quantization="none",
        parameters=1000,
        bytes_per_parameter=2,
        weight_bytes=2000,
        kv_bytes_per_token=10,
        kv_bytes_per_sequence=20480,
        overhead_bytes=0,
        gpu_memory_utilization=0.9,
        max_model_len=2048,
        max_model_len_source="model",
    )

    class P:
        @hookimpl(tryfirst=True)
        def a3s_size(self, profile: ModelProfile, spec: ModelSpec, catalog: Any) -> SizingPlan:
            return plan

    register_plugin(a3s_plugins, P(), "acme-sizer")
    got = a3s_plugins.size(_profile("acme/tiny"), ModelSpec(name="t", model="acme/tiny"), [])
    assert got is plan


def test_hook_a3s_register_engines(register_plugin: Any, a3s_plugins: Plugins) -> None:
    class Foo(Engine):
        name = "foo"

        def command(self, ctx: LaunchContext) -> list[str]:
            return ["foo-serve", "--port", str(ctx.port)]

    class P:
        @hookimpl
        def a3s_register_engines(self, registry: Any) -> None:
            registry.register(Foo)

    register_plugin(a3s_plugins, P(), "foo-engine")
    assert a3s_plugins.engines.get("foo") is Foo
    assert a3s_plugins.engines.owner("foo") == "foo-engine"


def test_hook_a3s_register_schedulers(register_plugin: Any, a3s_plugins: Plugins) -> None:
    class Random(SchedulerStrategy):
        name = "random"

        def score(self, node: Any, demand: Any, candidate: Any) -> float:
            return 0.0

    class P:
        @hookimpl
        def a3s_register_schedulers(self, registry: Any) -> None:
            registry.register(Random)

    register_plugin(a3s_plugins, P(), "random-scheduler")
    assert "random" in a3s_plugins.schedulers and "binpack" in a3s_plugins.schedulers


def test_hook_a3s_register_balancers(register_plugin: Any, a3s_plugins: Plugins) -> None:
    class First(Balancer):
        name = "first"

        def pick(self, replicas: Any) -> Any:
            return replicas[0]

    class P:
        @hookimpl
        def a3s_register_balancers(self, registry: Any) -> None:
            registry.register(First)

    register_plugin(a3s_plugins, P(), "first-balancer")
    assert a3s_plugins.balancers.get("first") is First


def test_hook_a3s_register_scaling_rules(register_plugin: Any, a3s_plugins: Plugins) -> None:
    class Never(ScalingRule):
        name = "never"

        def vote(self, signals: ScalingSignals, policy: AutoscalingSpec) -> Vote:
            return Vote(rule=self.name, direction="hold", reason="never scale")

    class P:
        @hookimpl
        def a3s_register_scaling_rules(self, registry: Any) -> None:
            registry.register(Never)

    register_plugin(a3s_plugins, P(), "never-rule")
    assert a3s_plugins.scaling_rules.get("never") is Never


def test_hook_a3s_register_runtimes(a3s_plugins: Plugins) -> None:
    # The test kit registers its FakeRuntime through this very hook.
    cls = a3s_plugins.runtimes.get("fake")
    assert issubclass(cls, Runtime)
    assert a3s_plugins.runtimes.owner("fake") == "a3s-testing-fake-runtime"


def test_hook_a3s_on_event(register_plugin: Any, a3s_plugins: Plugins, make_app: Any) -> None:
    seen: list[Event] = []

    class Good:
        @hookimpl
        def a3s_on_event(self, event: Event) -> None:
            seen.append(event)

    class Broken:
        @hookimpl
        def a3s_on_event(self, event: Event) -> None:
            raise RuntimeError("observer bug")

    register_plugin(a3s_plugins, Good(), "good-observer")
    register_plugin(a3s_plugins, Broken(), "broken-observer")
    client = make_app(controllers=False)
    r = client.post("/v1/deployments", json={"models": [{"name": "m", "model": "acme/x"}]})
    assert r.status_code == 202  # a broken observer never breaks the stream
    assert [e.type for e in seen] == ["deployment.accepted"] and seen[0].seq >= 1
    assert re.match(r"^dep-", seen[0].deployment_id or "")
