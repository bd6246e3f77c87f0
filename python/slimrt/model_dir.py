"""A Hugging Face model directory: config.json, *.safetensors shards (with or without an index
json) and everything else (tokenizer files, subfolders such as 1_Pooling/).

    model = scan_model_dir("minilm-bf16")
    model.shards        # ["model.safetensors"]
    model.other_files   # ["config.json", "1_Pooling/config.json", ...]
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path

from slimrt.errors import FormatError

__all__ = ["INDEX_SUFFIX", "MANIFEST_NAME", "ModelDir", "scan_model_dir"]

INDEX_SUFFIX = ".safetensors.index.json"
MANIFEST_NAME = "slimrt.json"
# Version control and cache folders travel with downloads but are no part of the model.
_SKIPPED_DIRS = {".git", ".cache", "__pycache__"}


@dataclass
class ModelDir:
    path: Path
    shards: list[str]  # top-level *.safetensors names, sorted
    index_name: str | None  # the *.safetensors.index.json, if the model has one
    index: dict | None  # its parsed content
    other_files: list[str]  # every other file, relative POSIX paths, sorted

    @property
    def weight_map(self) -> dict[str, str]:
        return dict(self.index["weight_map"]) if self.index else {}


def scan_model_dir(path: str | os.PathLike[str], *, require_config: bool = True) -> ModelDir:
    """Lists a model directory's parts and checks its index json; raises FormatError or
    FileNotFoundError naming what is wrong."""
    path = Path(path)
    if not path.is_dir():
        if path.exists():
            raise FormatError(f"{path}: not a directory")
        raise FileNotFoundError(errno.ENOENT, "no such directory", str(path))
    shards = sorted(p.name for p in path.glob("*.safetensors") if p.is_file())
    indexes = sorted(p.name for p in path.glob("*" + INDEX_SUFFIX) if p.is_file())
    if not shards:
        raise FormatError(f"{path}: no *.safetensors files (not a safetensors model directory)")
    if require_config and not (path / "config.json").is_file():
        raise FormatError(f"{path}: no config.json (not a Hugging Face model directory)")
    if len(indexes) > 1:
        raise FormatError(f"{path}: several index files ({', '.join(indexes)}); expected one")
    index_name = indexes[0] if indexes else None
    index = _read_index(path / index_name, shards) if index_name else None

    other_files = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        relative_root = Path(root).relative_to(path)
        for name in files:
            relative = (relative_root / name).as_posix()
            if relative in shards or relative == index_name:
                continue
            other_files.append(relative)
    return ModelDir(path, shards, index_name, index, sorted(other_files))


def _read_index(index_path: Path, shards: list[str]) -> dict:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{index_path}: not valid JSON ({e})") from e
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise FormatError(f"{index_path}: no weight_map of tensor names to shard files")
    for shard in sorted(set(weight_map.values())):
        if shard not in shards:
            raise FormatError(f"{index_path}: weight_map names {shard!r}, which does not exist")
    return index
