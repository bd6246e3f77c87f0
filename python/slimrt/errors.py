"""The exceptions slimrt raises for bad input, so callers (and the CLI) can tell them from bugs.

Every message about a file starts with the file or directory it is about ("model.gguf:
truncated at byte 24: ..."); messages about a request name the value at fault ("top_p must be
..."). Errors raised by the C++ core arrive as these classes too, by their category (the core's
slimrt::ErrorCategory): their str() is the message; .place says where in the C++ sources.
The core's log lines (a lossy cast while loading, what was loaded) go to the `slimrt` logger.
"""

from __future__ import annotations

import logging

from slimrt import _core

__all__ = [
    "ChecksumError",
    "ConversionError",
    "FileAccessError",
    "FormatError",
    "InternalError",
    "InvalidArgumentError",
    "LossyCastWarning",
    "ModelError",
    "OutOfMemoryError",
    "RequestError",
    "SlimrtError",
]


class SlimrtError(Exception):
    """Base of the errors about input the user gave; the CLI prints these in one line."""


class InvalidArgumentError(SlimrtError, ValueError):
    """A value passed to slimrt is out of its range: an option, a sampling value, a step."""


class RequestError(InvalidArgumentError):
    """A generation request slimrt cannot serve as asked: invalid sampling values, an empty
    prompt, a prompt that does not fit the context, a chat without a template."""


class FormatError(SlimrtError, ValueError):
    """A file does not follow its format (safetensors, GGUF, config.json, DF11 arrays): it is
    truncated, corrupt or inconsistent."""


class ChecksumError(FormatError):
    """Decoded bytes do not match the CRC-32 stored with them: the file is corrupt."""


class ConversionError(SlimrtError, ValueError):
    """A model directory cannot be converted as asked (wrong dtypes, output exists, ...)."""


class ModelError(SlimrtError, ValueError):
    """A well-formed model slimrt cannot run: an unsupported architecture, GGUF tensor type or
    tokenizer, a bias it does not implement, the default model not installed."""


class OutOfMemoryError(SlimrtError, MemoryError):
    """A memory budget does not fit: the weights or the engine's arenas at load, the KV cache's
    pages in a step."""


class FileAccessError(SlimrtError, OSError):
    """The operating system refused a file (open, map, read)."""


class InternalError(SlimrtError, RuntimeError):
    """A broken invariant inside slimrt: a bug to report, with its .place."""


class LossyCastWarning(UserWarning):
    """Weights were rounded to BF16 on the way in: the result is not the original model."""


# The core raises these classes directly (slimrt::ErrorCategory names -> classes).
for _category, _cls in {
    "invalid argument": InvalidArgumentError,
    "model file": FormatError,
    "unsupported": ModelError,
    "out of memory": OutOfMemoryError,
    "I/O": FileAccessError,
    "internal": InternalError,
}.items():
    _core.set_error_class(_category, _cls)

# The core's log levels (slimrt::LogLevel) -> logging levels.
_LOG_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
_core_log = logging.getLogger("slimrt")


def _log_core_line(level: int, text: str) -> None:
    _core_log.log(_LOG_LEVELS[min(max(level, 0), len(_LOG_LEVELS) - 1)], "%s", text)


_core.set_log_callback(_log_core_line)
