"""The sim runtime's inventory: the shipped cluster, custom files, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from a3s_runtime_sim import SimRuntime, load_inventory

from a3s_core.catalog import load_catalog
from a3s_core.errors import InvalidRequest


async def test_default_inventory_is_a_mixed_cluster(tmp_path: Path) -> None:
    rt = SimRuntime({"state_dir": str(tmp_path)})
    await rt.start()
    nodes = await rt.list_nodes()
    by_type: dict[str, int] = {}
    for n in nodes:
        by_type[n.gpu_product or "cpu"] = by_type.get(n.gpu_product or "cpu", 0) + n.gpu_count
    assert by_type == {"A100-80GB": 16, "H100-80GB": 8, "L40S-48GB": 8, "T4-16GB": 8}
    a100 = next(n for n in nodes if n.name == "gpu-a100-0")
    assert a100.gpu_memory_mib == 81920 and [g.index for g in a100.gpus] == list(range(8))
    assert a100.labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert a100.labels["nvidia.com/gpu.count"] == "8"
    assert all(g.allocated_to is None and g.utilization == 0.0 for g in a100.gpus)
    await rt.close()


def test_toml_and_yaml_files_with_counts_labels_and_external_gpus(tmp_path: Path) -> None:
    toml = tmp_path / "inv.toml"
    toml.write_text(
        '[[nodes]]\nname = "team-{i}"\ncount = 3\ngpu = "NVIDIA-H100-80GB-HBM3"\n'
        'gpu_count = 4\nexternal_gpus = 1\nlabels = { "a3s.io/team" = "team-001" }\n'
        '[[nodes]]\nname = "cpu-box"\ncpu_cores = 16\nmemory_gib = 64\n'
    )
    nodes, _ = load_inventory(toml, load_catalog())
    assert [n.name for n in nodes] == ["team-0", "team-1", "team-2", "cpu-box"]
    assert nodes[0].gpu_product == "H100-80GB" and nodes[0].labels["a3s.io/team"] == "team-001"
    assert nodes[0].free_indices() == [0, 1, 2]  # one GPU is someone else's
    assert nodes[3].gpu_count == 0 and nodes[3].memory_bytes == 64 * 1024**3
    yaml = tmp_path / "inv.yaml"
    yaml.write_text("nodes:\n  - name: l4\n    count: 2\n    gpu: L4-24GB\n    gpu_count: 2\n")
    nodes, _ = load_inventory(yaml, load_catalog())
    assert [n.name for n in nodes] == ["l4-0", "l4-1"] and nodes[1].gpu_count == 2


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[[nodes]]\nname = "x"\ngpu = "Z9000"\ngpu_count = 1\n', "unknown GPU 'Z9000'"),
        ('[[nodes]]\nname = "x"\ngpu = "T4-16GB"\ngpu_count = 1\n'
         '[[nodes]]\nname = "x"\ngpu = "T4-16GB"\ngpu_count = 1\n', "appears twice"),
        ('[[nodes]]\nname = "x"\ngpu_count = 2\n', "needs `gpu`"),
        ('[[nodes]]\nname = "x"\ngpu = "T4-16GB"\ngpu_count = -1\n', "nodes.0.gpu_count"),
        ('[[nodes]]\nname = "x"\ngpus = 1\n', "nodes.0.gpus"),
        ('[[nodes]]\nname = "x"\ngpu = "T4-16GB"\ngpu_count = 1\nexternal_gpus = 2\n',
         "more than gpu_count"),
        ("nodes = [", "cannot parse"),
    ],
)
def test_bad_inventories_name_the_field(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InvalidRequest, match=match) as info:
        load_inventory(path, load_catalog())
    assert str(path) in info.value.message
    assert info.value.field and info.value.field.startswith("runtime_options.inventory")


async def test_missing_file_and_unknown_options_are_refused(tmp_path: Path) -> None:
    rt = SimRuntime({"state_dir": str(tmp_path), "inventory": str(tmp_path / "nope.toml")})
    with pytest.raises(InvalidRequest, match="cannot read"):
        await rt.start()
    with pytest.raises(InvalidRequest, match=r"runtime_options\.time_scal") as info:
        SimRuntime({"time_scal": 0.1})
    assert info.value.field == "runtime_options.time_scal"
    with pytest.raises(InvalidRequest, match=r"runtime_options\.time_scale"):
        SimRuntime({"time_scale": 0})
