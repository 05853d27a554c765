"""Local model directories: config.json plus safetensors headers (no tensor data read)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import safe_open

from a3s_core.errors import ModelNotFound
from a3s_core.sizing.gguf_file import gguf_files, gguf_profile
from a3s_core.sizing.profiles import profile_from_config
from a3s_core.sizing.tensors import profile_from_tensors
from a3s_core.types import ModelProfile

_cache: dict[tuple[str, tuple[tuple[str, float, int], ...]], ModelProfile] = {}


def _fingerprint(path: Path) -> tuple[tuple[str, float, int], ...]:
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.suffix in (".json", ".safetensors", ".gguf"))
    return tuple((p.name, p.stat().st_mtime, p.stat().st_size) for p in files)


def local_profile(model: str, revision: str | None = None) -> ModelProfile | None:
    """A profile for a local path, None when `model` is not a path. A path that is given
    explicitly but does not exist is an error, not a fall-through to the Hub."""
    path = Path(model).expanduser()
    if not path.exists():
        if model.startswith(("/", "./", "../", "~")) or model.endswith(".gguf"):
            raise ModelNotFound(
                f"model path {model!r} does not exist; give an existing model directory "
                "(config.json + *.safetensors) or a .gguf file"
            )
        return None
    key = (str(path.resolve()), _fingerprint(path))
    if key not in _cache:
        _cache[key] = _read(path, model, revision)
    return _cache[key].model_copy(deep=True)


def _read(path: Path, model: str, revision: str | None) -> ModelProfile:
    if path.is_file() or (not (path / "config.json").exists() and gguf_files(path)):
        return gguf_profile(path, model)
    config_path = path / "config.json"
    if not config_path.exists():
        raise ModelNotFound(
            f"model directory {model!r} has no config.json (and no .gguf file); give a "
            "Hugging Face checkpoint directory or a GGUF file"
        )
    config: dict[str, Any] = json.loads(config_path.read_text())
    files = _safetensors_files(path)
    if not files:
        return profile_from_config(config, model=model, source="config", revision=revision,
                                   local_path=str(path),
                                   notes=[f"{model}: no *.safetensors files to read"])
    tensors: list[tuple[str, str, list[int]]] = []
    for f in files:
        with safe_open(str(f), framework="numpy") as st:
            for name in st.keys():  # noqa: SIM118 - safe_open is not a mapping
                sl = st.get_slice(name)
                tensors.append((name, sl.get_dtype(), list(sl.get_shape())))
    return profile_from_tensors(config, tensors, model=model, source="local",
                                revision=revision, local_path=str(path))


def _safetensors_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (path / n).exists()]
        if missing:
            raise ModelNotFound(
                f"model directory {str(path)!r}: its index lists {missing[0]} but the file is "
                "missing; finish the download"
            )
        return [path / n for n in names]
    return sorted(path.glob("*.safetensors"))
