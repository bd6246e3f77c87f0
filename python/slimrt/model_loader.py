"""One entry point for every kind of model slimrt runs.

model = load_model(None)                           # the default SmolLM2-135M-Instruct
model = load_model("llama-dir", weights="df11")    # compress to DF11 while loading
model.config, model.weights, model.tokenizer, model.chat_template, model.source
"""

from __future__ import annotations

import logging
import os

from slimrt.engine_weights import check_weight_format
from slimrt.loaded_model import LoadedModel
from slimrt.model_source import resolve_model

__all__ = ["load_model"]

log = logging.getLogger(__name__)


def load_model(
    model: str | os.PathLike[str] | None = None,
    *,
    weights: str = "bf16",
    progress: bool = True,
    num_threads: int = 0,
) -> LoadedModel:
    """Loads `model` (None: the default model; a Hugging Face or slimrt directory; a .gguf
    file) with its matrices as BF16 (weights="bf16") or DF11 (weights="df11")."""
    check_weight_format(weights)
    source = resolve_model(model)
    if source.kind == "gguf":
        from slimrt.gguf_loader import load_gguf

        loaded = load_gguf(source.path, weights=weights, progress=progress, num_threads=num_threads)
    else:
        from slimrt.hf_loader import load_hf_dir

        loaded = load_hf_dir(
            source.path, weights=weights, progress=progress, num_threads=num_threads
        )
    log.info("loaded %s", loaded.source)
    return loaded
