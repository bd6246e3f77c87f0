"""DF11: BF16 tensors stored losslessly in about 11 bits per value (docs/FORMAT.md).

    t = df11.compress(weight_bf16)                  # torch.bfloat16 tensor or uint16 BF16 bits
    t.ratio                                          # ~0.68 for typical LLM weights
    bits = t.decompress()                            # numpy uint16, CRC-32 checked
    w = t.decompress("cuda")                         # torch.bfloat16 on the GPU
    df11.save("model.safetensors", {"w": t, "b": bias})
    tensors = df11.load("model.safetensors")         # {"w": Df11Tensor, "b": np.ndarray}

A DF11 tensor NAME lives in an ordinary safetensors file as four tensors NAME.df11.lengths,
.bitstream, .index and .signmant plus a JSON description in __metadata__["slimrt.df11:NAME"].
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from slimrt import _core
from slimrt.errors import ChecksumError, FormatError
from slimrt.safetensors_file import read_safetensors, write_safetensors

if TYPE_CHECKING:
    import torch

__all__ = [
    "FORMAT",
    "GROUP_ELEMENTS",
    "LANES",
    "LANE_ELEMENTS",
    "MAX_CODE_LENGTH",
    "METADATA_PREFIX",
    "VERSION",
    "Df11File",
    "Df11Tensor",
    "compress",
    "load",
    "read",
    "save",
]

FORMAT = "slimrt-df11"
VERSION = 1
LANES = 32
LANE_ELEMENTS = 128
GROUP_ELEMENTS = LANES * LANE_ELEMENTS
MAX_CODE_LENGTH = 12
METADATA_PREFIX = "slimrt.df11:"
# Array name suffix -> safetensors dtype, in the order FORMAT.md lists them.
ARRAYS = {"lengths": "U8", "bitstream": "U32", "index": "U32", "signmant": "U8"}

# The Python and C++ halves must describe one format; a mismatch is a packaging bug.
if (_core.DF11_VERSION, _core.DF11_LANES, _core.DF11_LANE_ELEMENTS, _core.DF11_MAX_CODE_LENGTH) != (
    VERSION,
    LANES,
    LANE_ELEMENTS,
    MAX_CODE_LENGTH,
):
    raise ImportError("slimrt._core was built for another DF11 layout; reinstall slimrt")


@dataclass(frozen=True, eq=False, repr=False)
class Df11Tensor:
    """One DF11-compressed BF16 tensor: its shape, the four arrays of FORMAT.md and the CRC-32
    of the original BF16 bytes."""

    shape: tuple[int, ...]
    lengths: np.ndarray  # uint8 [256]
    bitstream: np.ndarray  # uint32 [W]
    index: np.ndarray  # uint32 [G, 17]
    signmant: np.ndarray  # uint8 [numel]
    crc32: int
    _numel: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "_numel", math.prod(self.shape))

    def __repr__(self) -> str:
        return (
            f"Df11Tensor(shape={self.shape}, nbytes={self.nbytes}, ratio={self.ratio:.4f}, "
            f"crc32={self.crc32:#010x})"
        )

    @property
    def numel(self) -> int:
        return self._numel

    @property
    def nbytes(self) -> int:
        """Compressed size: the four arrays' bytes."""
        return sum(a.nbytes for a in (self.lengths, self.bitstream, self.index, self.signmant))

    @property
    def original_nbytes(self) -> int:
        return 2 * self._numel

    @property
    def ratio(self) -> float:
        """nbytes / original_nbytes; inf for an empty tensor (the fixed arrays remain)."""
        return self.nbytes / self.original_nbytes if self._numel else math.inf

    def description(self) -> dict[str, Any]:
        """The JSON description FORMAT.md stores next to the arrays."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "dtype": "bfloat16",
            "shape": list(self.shape),
            "lanes": LANES,
            "lane_elements": LANE_ELEMENTS,
            "crc32": self.crc32,
        }

    def validate(self) -> None:
        """Checks the arrays against the shape and the format (so decoding cannot read out of
        bounds); raises FormatError."""
        for suffix, dtype in ARRAYS.items():
            array = getattr(self, suffix)
            if array.dtype != DTYPE_OF[dtype]:
                raise FormatError(f"DF11 array {suffix} is {array.dtype}, expected {dtype}")
        _core.df11_validate(self.lengths, self.bitstream, self.index, self.signmant, self._numel)

    def decompress(
        self, device: str = "cpu", *, verify: bool | None = None, num_threads: int = 0
    ) -> np.ndarray | torch.Tensor:
        """Decodes the tensor, bit-exact.

        device="cpu" returns a numpy uint16 array of BF16 bits with this tensor's shape.
        device="cuda" (or "cuda:N") returns a torch.bfloat16 tensor on that GPU.
        verify checks the CRC-32 of the result against the stored one (ChecksumError on
        mismatch). It defaults to True on the CPU, where it costs a fraction of the decode, and
        to False on CUDA, where it would copy the result back to the host.
        """
        if device == "cpu":
            out = np.empty(self.shape, dtype=np.uint16)
            _core.df11_decode_cpu(
                self.lengths,
                self.bitstream,
                self.index,
                self.signmant,
                self._numel,
                out,
                num_threads,
            )
            if verify is None or verify:
                self._check_crc32(out)
            return out
        if str(device).startswith("cuda"):
            return self._decompress_cuda(str(device), bool(verify))
        raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda[:N]'")

    def upload(self) -> _core.Df11DeviceTensor:
        """Copies the arrays to the current CUDA device, once, for repeated decode_into calls."""
        return _core.Df11DeviceTensor(
            self.lengths, self.bitstream, self.index, self.signmant, self._numel
        )

    def _decompress_cuda(self, device: str, verify: bool) -> torch.Tensor:
        try:
            import torch
        except ImportError as e:
            raise RuntimeError(
                f"decompress(device={device!r}) returns a torch tensor; install PyTorch"
            ) from e
        if not _core.cuda_available():
            raise RuntimeError(
                "slimrt was built without CUDA or sees no usable GPU; use device='cpu'"
            )
        if not torch.cuda.is_available():
            raise RuntimeError("PyTorch sees no CUDA device (is a CUDA build of torch installed?)")
        target = torch.device(device)
        with torch.cuda.device(target):
            out = torch.empty(self.shape, dtype=torch.bfloat16, device=target)
            if self._numel:
                stream = torch.cuda.current_stream(target)
                on_device = self.upload()
                on_device.decode_into_ptr(out.data_ptr(), stream.cuda_stream)
                # on_device frees its memory when collected: the kernel must be done with it.
                stream.synchronize()
        if verify:
            self._check_crc32(out.cpu().view(torch.int16).numpy().view(np.uint16))
        return out

    def _check_crc32(self, bits: np.ndarray) -> None:
        actual = _core.crc32(bits.reshape(-1).view(np.uint8))
        if actual != self.crc32:
            raise ChecksumError(
                f"decoded tensor has CRC-32 {actual:#010x}, the description says "
                f"{self.crc32:#010x}: the DF11 data is corrupt"
            )


DTYPE_OF = {"U8": np.dtype(np.uint8), "U32": np.dtype(np.uint32)}


def compress(
    array: np.ndarray | torch.Tensor,
    *,
    max_code_length: int = MAX_CODE_LENGTH,
    num_threads: int = 0,
) -> Df11Tensor:
    """Compresses a BF16 tensor losslessly.

    array: a torch.bfloat16 tensor (any device; it is copied to the CPU) or a numpy uint16
    array holding BF16 bit patterns. max_code_length (1..12) caps the exponent code length;
    shorter caps cost ratio. num_threads=0 uses every core.
    """
    if type(max_code_length) is not int or not 1 <= max_code_length <= MAX_CODE_LENGTH:
        raise ValueError(f"max_code_length must be an int in [1, 12], got {max_code_length!r}")
    bits = _bf16_bits(array)
    result = _core.df11_compress(bits, max_code_length, num_threads)
    if result["numel"] != bits.size:
        raise RuntimeError(f"core compressed {result['numel']} of {bits.size} elements")
    return Df11Tensor(
        shape=bits.shape,
        lengths=result["lengths"],
        bitstream=result["bitstream"],
        index=result["index"],
        signmant=result["signmant"],
        crc32=int(result["crc32"]),
    )


def _bf16_bits(array: object) -> np.ndarray:
    """BF16 input as a C-contiguous little-endian uint16 numpy array (zero-copy when it can)."""
    torch = sys.modules.get("torch")  # never import torch just to ask
    if torch is not None and isinstance(array, torch.Tensor):
        name = str(array.dtype).removeprefix("torch.")
        if array.dtype != torch.bfloat16:
            raise TypeError(
                f"{name} tensor given; DF11 compresses bfloat16 — cast with "
                ".to(torch.bfloat16) (lossy) first"
            )
        tensor = array.detach().cpu().contiguous()
        return tensor.view(torch.int16).numpy().view(np.uint16)
    if isinstance(array, np.ndarray):
        if array.dtype.kind == "u" and array.dtype.itemsize == 2:
            return np.asarray(array, dtype="<u2", order="C")
        if array.dtype.kind == "f":
            raise TypeError(
                f"{array.dtype} array given; DF11 compresses BF16 bit patterns held in a uint16 "
                "array — convert with slimrt.bfloat16.round_to_bf16(array) (lossy) first"
            )
        raise TypeError(
            f"{array.dtype} array given; DF11 compresses BF16 bit patterns held in a uint16 "
            "array (or a torch.bfloat16 tensor)"
        )
    raise TypeError(
        f"{type(array).__name__} given; DF11 compresses a torch.bfloat16 tensor or a numpy "
        "uint16 array of BF16 bit patterns"
    )


def save(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Df11Tensor | np.ndarray | torch.Tensor],
    metadata: Mapping[str, str] | None = None,
    *,
    dtypes: Mapping[str, str] | None = None,
) -> None:
    """Writes DF11 and plain tensors into one safetensors file (atomically).

    Plain tensors are stored as they are; torch.bfloat16 tensors as BF16. `dtypes` marks plain
    numpy arrays whose safetensors dtype numpy cannot express ({"norm": "BF16"} for uint16 bits).
    """
    arrays: dict[str, np.ndarray] = {}
    array_dtypes: dict[str, str] = {}
    header_metadata: dict[str, str] = {}
    for key in metadata or {}:
        if key.startswith(METADATA_PREFIX):
            raise ValueError(f"metadata key {key!r} is reserved for DF11 descriptions")

    def put(name: str, array: np.ndarray, dtype: str | None) -> None:
        if name in arrays:
            raise ValueError(f"tensor name {name!r} is used twice")
        arrays[name] = array
        if dtype is not None:
            array_dtypes[name] = dtype

    for name, value in tensors.items():
        if isinstance(value, Df11Tensor):
            for suffix, dtype in ARRAYS.items():
                put(f"{name}.df11.{suffix}", getattr(value, suffix), dtype)
            header_metadata[METADATA_PREFIX + name] = json.dumps(
                value.description(), separators=(",", ":")
            )
            continue
        _, sep, suffix = name.rpartition(".df11.")
        if sep and suffix in ARRAYS:
            raise ValueError(f"plain tensor name {name!r} would read back as a DF11 array")
        array, dtype = _plain_array(name, value)
        put(name, array, (dtypes or {}).get(name, dtype))
    header_metadata.update(metadata or {})
    write_safetensors(path, arrays, header_metadata, dtypes=array_dtypes)


def _plain_array(name: str, value: object) -> tuple[np.ndarray, str | None]:
    if isinstance(value, np.ndarray):
        return value, None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        special = {
            torch.bfloat16: "BF16",
            torch.float8_e4m3fn: "F8_E4M3",
            torch.float8_e5m2: "F8_E5M2",
        }
        if tensor.dtype in special:
            itemsize = tensor.element_size()
            view_as = torch.int16 if itemsize == 2 else torch.uint8
            bits = tensor.view(view_as).numpy().view(np.uint16 if itemsize == 2 else np.uint8)
            return bits, special[tensor.dtype]
        return tensor.numpy(), None
    raise TypeError(
        f"tensor {name!r}: expected a Df11Tensor, numpy array or torch tensor, "
        f"got {type(value).__name__}"
    )


@dataclass
class Df11File:
    """A safetensors file read through the DF11 container: DF11 tensors reassembled, others
    as zero-copy numpy arrays. `dtypes` gives each tensor's logical safetensors dtype
    ("BF16" for DF11 tensors); `metadata` is __metadata__ without the DF11 descriptions."""

    path: Path
    tensors: dict[str, Df11Tensor | np.ndarray]
    dtypes: dict[str, str]
    metadata: dict[str, str]


def read(path: str | os.PathLike[str]) -> Df11File:
    """Reads and validates a file; every defect raises FormatError naming file and tensor.

    The container's rules (descriptions, arrays, validation) live in the C++ core
    (cpp/src/df11_container.cpp); this reassembles what it accepted as views of the mapping.
    """
    file = read_safetensors(path)
    found = _core.read_df11_tensors(file.buffer, str(file.path))
    described = {name: (shape, crc32) for name, shape, crc32 in found}
    owner = {f"{name}.df11.{suffix}": name for name in described for suffix in ARRAYS}
    tensors: dict[str, Df11Tensor | np.ndarray] = {}
    dtypes: dict[str, str] = {}
    # Logical order: each tensor where its first stored array sits in the file.
    for name in dict.fromkeys(owner.get(key, key) for key in file.tensors):
        if name not in described:
            tensors[name] = file.array(name)
            dtypes[name] = file.tensors[name].dtype
            continue
        shape, crc32 = described[name]
        arrays = {suffix: file.array(f"{name}.df11.{suffix}") for suffix in ARRAYS}
        tensors[name] = Df11Tensor(shape=shape, crc32=crc32, **arrays)
        dtypes[name] = "BF16"
    metadata = {k: v for k, v in file.metadata.items() if not k.startswith(METADATA_PREFIX)}
    return Df11File(file.path, tensors, dtypes, metadata)


def load(path: str | os.PathLike[str]) -> dict[str, Df11Tensor | np.ndarray]:
    """{name: Df11Tensor or numpy array} of a safetensors file (BF16 plain tensors as uint16)."""
    return read(path).tensors
