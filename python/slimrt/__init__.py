"""slimrt: a memory-slim LLM inference runtime.

    import slimrt
    llm = slimrt.LLM()                      # SmolLM2-135M-Instruct; CUDA when usable, else CPU
    print(llm.generate("The capital of France is")[0].text)
    llm.chat([{"role": "user", "content": "Hi!"}], slimrt.SamplingParams(temperature=0.7))

    t = slimrt.df11.compress(weight_bf16)   # lossless, ~70 % of the BF16 bytes
    slimrt.df11.save("w.safetensors", {"w": t})

    slimrt.cuda_available()                 # whether device="cuda" can run here (never raises)

The command line (`slimrt generate|chat|serve|compress|verify|inspect|example-model`) lives in
slimrt.cli.
"""

from slimrt import _core, bfloat16, df11
from slimrt._core import cuda_available, cuda_built
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

# The core's, i.e. cpp/include/slimrt/version.h's, which the wheel's metadata is also read from.
__version__: str = _core.version()

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
    "cuda_available",
    "cuda_built",
    "df11",
]
