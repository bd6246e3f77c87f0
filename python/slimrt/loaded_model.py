"""A model ready for engines: the core's Model (weights in the device's arena), its tokenizer
and chat template.

    loaded = load_model("llama-dir")           # slimrt.model_loader
    engine = _core.Engine(loaded.model, {"max_batch": 16})
    loaded.tokenizer.encode("Hello")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slimrt.tokenizer import Tokenizer

__all__ = ["LoadedModel"]


@dataclass
class LoadedModel:
    model: Any  # _core.Model
    tokenizer: Tokenizer
    chat_template: str | None  # Jinja source; None when the model has none

    @property
    def config(self) -> Any:
        """The normalised _core.ModelConfig."""
        return self.model.config

    @property
    def source(self) -> str:
        """One line saying what was loaded and how, for logs and --stats."""
        return self.model.summary
