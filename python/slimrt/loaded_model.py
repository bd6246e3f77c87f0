"""A model ready for the engine: what every loader (HF directory, slimrt directory, GGUF) makes.

model = load_model("llama-dir")            # slimrt.model_loader
engine = _core.Engine(model.config, model.weights, options)
model.tokenizer.encode("Hello")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slimrt.tokenizer import Tokenizer

__all__ = ["LoadedModel"]


@dataclass
class LoadedModel:
    config: dict[str, Any]  # Hugging Face config.json keys, normalized (slimrt.model_config)
    weights: dict[str, Any]  # ENGINE_API.md names -> uint16 BF16 / float32 / _core.Df11Weight
    tokenizer: Tokenizer
    chat_template: str | None  # Jinja source; None when the model has none
    source: str  # one line saying what was loaded and how, for logs and --stats

    @property
    def bos_token_id(self) -> int | None:
        return self.tokenizer.bos_token_id

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        return self.tokenizer.eos_token_ids

    @property
    def architecture(self) -> str:
        return self.config["architectures"][0]
