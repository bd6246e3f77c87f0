"""Loads a Hugging Face model directory, or a slimrt directory made from one by `slimrt
compress`, into the engine's weights dict.

    model = load_hf_dir("Llama-3.2-1B", weights="bf16")

Tensors come from every *.safetensors shard (an index json is not needed). BF16 matrices stay
views of the files' mmaps; F16/F32 matrices are rounded to BF16 (said in a log line); norms and
biases become float32. weights="df11" compresses dense matrices on the way in; weights="bf16"
decodes DF11 ones. Every problem raises an error naming the file and the tensor.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from slimrt import df11
from slimrt.chat_template import read_chat_template
from slimrt.engine_weights import (
    bf16_matrix,
    check_weight_format,
    df11_weight,
    f32_vector,
    to_format,
)
from slimrt.errors import ModelError
from slimrt.loaded_model import LoadedModel
from slimrt.model_config import normalize_config, weight_shapes
from slimrt.model_dir import MANIFEST_NAME, scan_model_dir
from slimrt.progress import byte_progress
from slimrt.tokenizer import Tokenizer, read_json_object, read_tokenizer_config

__all__ = ["load_hf_dir", "read_config"]

log = logging.getLogger(__name__)


def read_config(path: Path) -> dict[str, Any]:
    """config.json of a model directory, parsed (not yet checked)."""
    file = path / "config.json"
    if not file.is_file():
        raise ModelError(f"{path}: no config.json (not a Hugging Face model directory)")
    return read_json_object(file)


def load_hf_dir(
    path: str | os.PathLike[str],
    *,
    weights: str = "bf16",
    progress: bool = True,
    num_threads: int = 0,
) -> LoadedModel:
    """Config, engine weights, tokenizer and chat template of a model directory."""
    check_weight_format(weights)
    path = Path(path)
    raw_config = read_config(path)
    config = normalize_config(raw_config, where=str(path / "config.json"))
    model_dir = scan_model_dir(path)
    files = [df11.read(path / shard) for shard in model_dir.shards]
    found = _find_tensors(path, files, weight_shapes(config))

    total = sum(value.nbytes for _, value in found.values())
    desc = "load" if weights == "bf16" else "load + DF11"
    engine_weights: dict[str, Any] = {}
    cast: dict[str, int] = {}
    dense_to_df11 = df11_to_dense = 0
    with byte_progress(total, desc, enabled=progress) as bar:
        for name, (file, value) in found.items():
            where = f"{file.path}: tensor {name}"
            dtype = file.dtypes[name]
            if isinstance(value, df11.Df11Tensor):
                if weights == "df11":
                    engine_weights[name] = df11_weight(value)
                else:
                    engine_weights[name] = value.decompress(num_threads=num_threads)
                    df11_to_dense += 1
            elif value.ndim == 1:
                engine_weights[name] = f32_vector(value, dtype, where=where)
            else:
                bits, was_cast = bf16_matrix(value, dtype, where=where)
                if was_cast:
                    cast[dtype] = cast.get(dtype, 0) + 1
                engine_weights[name] = to_format(bits, weights, num_threads=num_threads)
                dense_to_df11 += weights == "df11"
            bar.update(value.nbytes)

    if cast:
        counts = ", ".join(f"{n} {dtype}" for dtype, n in sorted(cast.items()))
        # A warning, not info: the model that runs is no longer exactly the one on disk.
        log.warning("%s: rounded %s matrices to BF16 (LOSSY: nearest even)", path, counts)
    kind = "slimrt directory" if (path / MANIFEST_NAME).is_file() else "Hugging Face directory"
    how = []
    if dense_to_df11:
        how.append(f"{dense_to_df11} matrices compressed to DF11 on load")
    if df11_to_dense:
        how.append(f"{df11_to_dense} DF11 matrices decoded to BF16")
    if cast:
        how.append("F16/F32 matrices rounded to BF16")
    source = f"{path} ({kind}, {config['architectures'][0]}, {weights.upper()} weights"
    source += "".join(f"; {h}" for h in how) + ")"

    tokenizer = Tokenizer.from_dir(path, raw_config)
    template = read_chat_template(path, read_tokenizer_config(path))
    return LoadedModel(config, engine_weights, tokenizer, template, source)


def _find_tensors(
    path: Path, files: list[df11.Df11File], shapes: dict[str, tuple[int, ...]]
) -> dict[str, tuple[df11.Df11File, Any]]:
    """{name: (file, tensor)} for every tensor the engine needs, in `shapes` order; checks that
    none is missing, none is stored twice and each has the shape the config implies."""
    found: dict[str, tuple[df11.Df11File, Any]] = {}
    for file in files:
        for name, value in file.tensors.items():
            if name in found:
                raise ModelError(
                    f"{path}: tensor {name} is in both {found[name][0].path.name} and "
                    f"{file.path.name}"
                )
            if name in shapes:
                found[name] = (file, value)
            elif name.startswith("model.layers.") and name.endswith(".bias"):
                # A bias the config does not announce (MLP biases, say): the engine would
                # ignore it and compute something else than the model.
                raise ModelError(f"{file.path}: tensor {name}: this bias is not supported")
    for name, shape in shapes.items():
        if name not in found:
            raise ModelError(f"{path}: missing tensor {name}")
        file, value = found[name]
        if tuple(value.shape) != shape:
            raise ModelError(
                f"{file.path}: tensor {name} has shape {list(value.shape)}, config expects "
                f"{list(shape)}"
            )
    return {name: found[name] for name in shapes}
