"""slimrt: a memory-slim LLM inference runtime.

    import slimrt
    t = slimrt.df11.compress(weight_bf16)   # lossless, ~70 % of the BF16 bytes
    slimrt.df11.save("w.safetensors", {"w": t})

The command line (`slimrt compress|verify|inspect|example-model`) lives in slimrt.cli.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version

from slimrt import bfloat16, df11
from slimrt.df11 import Df11Tensor
from slimrt.errors import ChecksumError, ConversionError, FormatError, SlimrtError

try:
    __version__ = _distribution_version("slimrt")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "ChecksumError",
    "ConversionError",
    "Df11Tensor",
    "FormatError",
    "SlimrtError",
    "__version__",
    "bfloat16",
    "df11",
]
