"""One entry point for every kind of model slimrt runs; the reading is the C++ core's (it logs
what it loaded, and any lossy cast, to the `slimrt` logger: slimrt.errors routes its lines).

model = load_model(None)                           # the default SmolLM2-135M-Instruct
model = load_model("llama-dir", weights="df11")    # compress to DF11 while loading
model.model, model.tokenizer, model.chat_template, model.source
"""

from __future__ import annotations

import os
from pathlib import Path

from slimrt import _core
from slimrt.chat_template import read_chat_template
from slimrt.gguf_tokenizer import gguf_tokenizer
from slimrt.loaded_model import LoadedModel
from slimrt.model_source import default_model_path
from slimrt.progress import StageProgress
from slimrt.tokenizer import Tokenizer, read_json_object, read_tokenizer_config

__all__ = ["DEVICES", "WEIGHT_FORMATS", "load_model"]

# What ModelOptions.device and .weights take; the core checks them, the CLI offers them as
# choices.
DEVICES = ("auto", "cpu", "cuda")
WEIGHT_FORMATS = ("bf16", "df11", "stored")


def load_model(
    model: str | os.PathLike[str] | None = None,
    *,
    device: str = "cpu",
    weights: str = "bf16",
    verify: bool = True,
    progress: bool = True,
    num_threads: int = 0,
) -> LoadedModel:
    """Loads `model` (None: the default model; a Hugging Face or slimrt directory; a .gguf
    file) onto `device` with its matrices as BF16 (weights="bf16"), DF11 ("df11") or as stored.
    verify=False skips the CRC-32 check of DF11 tensors."""
    path = default_model_path() if model is None else Path(model)
    with StageProgress(enabled=progress) as bar:
        core = _core.Model.load(
            str(path),
            {
                "device": device,
                "weights": weights,
                "verify": verify,
                "num_threads": num_threads,
                "progress": bar.update if progress else None,
            },
        )
    if core.format == "gguf":
        metadata = core.metadata()
        tokenizer = gguf_tokenizer(metadata, where=str(path))
        template = metadata.get("tokenizer.chat_template")
    else:
        tokenizer = Tokenizer.from_dir(path, read_json_object(path / "config.json"))
        template = read_chat_template(path, read_tokenizer_config(path))
    return LoadedModel(core, tokenizer, template)
