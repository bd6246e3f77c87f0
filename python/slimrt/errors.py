"""The exceptions slimrt raises for bad input, so callers (and the CLI) can tell them from bugs.

Every message about a file starts with the file or directory it is about ("model.safetensors:
truncated: ..."); messages about a request name the value at fault ("top_p must be ...").
"""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "ConversionError",
    "FormatError",
    "LossyCastWarning",
    "ModelError",
    "RequestError",
    "SlimrtError",
    "from_core_error",
]


class SlimrtError(Exception):
    """Base of the errors about input the user gave; the CLI prints these in one line."""


class FormatError(SlimrtError, ValueError):
    """A file does not follow its format (safetensors container, DF11 arrays or description)."""


class ChecksumError(FormatError):
    """Decoded bytes do not match the CRC-32 stored with them: the file is corrupt."""


class ConversionError(SlimrtError, ValueError):
    """A model directory cannot be converted as asked (wrong dtypes, output exists, ...)."""


class ModelError(SlimrtError, ValueError):
    """A model slimrt cannot run: unsupported architecture or GGUF tensor type, missing or
    misshapen tensors, no tokenizer, the default model not installed."""


class RequestError(SlimrtError, ValueError):
    """A generation request slimrt cannot serve as asked: invalid sampling values, an empty
    prompt, a prompt that does not fit the context, a chat without a template."""


class LossyCastWarning(UserWarning):
    """Weights were rounded to BF16 on the way in: the result is not the original model."""


def from_core_error(error: Exception) -> Exception:
    """The exception to raise for an error of the C++ core (slimrt._core.Error).

    A malformed file becomes FormatError and unsupported input ModelError, with the core's
    message alone (no " [function, file:line]"); any other error (a bug, an OS failure) is
    returned as it is. Use it as `raise from_core_error(e) from None`.
    """
    category = getattr(error, "category", None)
    message = getattr(error, "message", str(error))
    if category == "model file":
        return FormatError(message)
    if category == "unsupported":
        return ModelError(message)
    return error
