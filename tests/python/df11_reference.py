"""An independent, slow numpy reading of docs/FORMAT.md, to check the C++ core against the text.

Code lengths are the encoder's choice (any optimal length-limited code is valid), so the
reference takes them from the encoder and derives everything the format then fixes: canonical
codes, element order, bitstream, index, sign/mantissa bytes and tail padding. It also computes
the optimal cost of a length-limited code (package-merge) to check the encoder's choice.
"""

from __future__ import annotations

import math

import numpy as np

LANES, LANE_ELEMENTS, VECTOR = 32, 128, 8
GROUP_ELEMENTS = LANES * LANE_ELEMENTS
MAX_CODE_LENGTH = 12
TAIL_PAD_WORDS = 50


def exponents(bits: np.ndarray) -> np.ndarray:
    return ((bits.reshape(-1) >> 7) & 0xFF).astype(np.int64)


def signmants(bits: np.ndarray) -> np.ndarray:
    flat = bits.reshape(-1)
    return (((flat >> 8) & 0x80) | (flat & 0x7F)).astype(np.uint8)


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """DEFLATE's rule: symbols sorted by (length, value) get consecutive codes."""
    codes = np.zeros(256, dtype=np.int64)
    code, previous = 0, 0
    for symbol in sorted((s for s in range(256) if lengths[s]), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[symbol]) - previous
        previous = int(lengths[symbol])
        codes[symbol] = code
        code += 1
    return codes


def kraft_sum(lengths: np.ndarray) -> float:
    return sum(2.0 ** -int(n) for n in lengths if n)


def lane_elements(group: int, numel: int) -> list[np.ndarray]:
    """Element indices lane l codes, in its order: step j, then i (FORMAT.md)."""
    offsets = np.arange(GROUP_ELEMENTS).reshape(LANE_ELEMENTS // VECTOR, LANES, VECTOR)
    by_lane = offsets.transpose(1, 0, 2).reshape(LANES, LANE_ELEMENTS) + group * GROUP_ELEMENTS
    return [lane[lane < numel] for lane in by_lane]


def encode(bits: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
    """bitstream, index and signmant for `bits` under the code `lengths`."""
    numel = bits.size
    exps = exponents(bits)
    lengths = lengths.astype(np.int64)
    codes = canonical_codes(lengths)
    assert np.all(lengths[exps] > 0), "an exponent present in the tensor has no code"
    groups = math.ceil(numel / GROUP_ELEMENTS)
    index = np.zeros((groups, 17), dtype=np.uint32)
    words: list[np.ndarray] = []
    position = 0
    for g in range(groups):
        lanes = lane_elements(g, numel)
        lane_bits = [int(lengths[exps[lane]].sum()) for lane in lanes]
        offsets = np.concatenate([[0], np.cumsum(lane_bits)[:-1]]).astype(np.int64)
        assert offsets[-1] < 1 << 16
        index[g, 0] = position
        for lane in range(LANES):
            index[g, 1 + lane // 2] |= np.uint32(int(offsets[lane]) << (16 * (lane & 1)))
        order = np.concatenate(lanes)
        n = lengths[exps[order]]
        c = codes[exps[order]]
        owner = np.repeat(np.arange(order.size), n)
        k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        stream = ((c[owner] >> (n[owner] - 1 - k)) & 1).astype(np.uint8)
        stream = np.concatenate([stream, np.zeros(-stream.size % 32, dtype=np.uint8)])
        group_words = np.packbits(stream).view(">u4").astype(np.uint32)
        words.append(group_words)
        position += group_words.size
    words.append(np.zeros(TAIL_PAD_WORDS, dtype=np.uint32))
    return {"bitstream": np.concatenate(words), "index": index, "signmant": signmants(bits)}


def optimal_code_bits(counts: np.ndarray, max_length: int) -> int:
    """Total bits of an optimal code with no code longer than max_length (package-merge),
    raised to ceil(log2(symbols)) where no complete code that short exists."""
    weights = sorted(int(c) for c in counts if c)
    m = len(weights)
    if m <= 1:
        return sum(weights)
    limit = max(max_length, math.ceil(math.log2(m)))
    items = list(weights)
    for _ in range(limit - 1):
        packages = [items[i] + items[i + 1] for i in range(0, len(items) - 1, 2)]
        items = sorted(weights + packages)
    return sum(items[: 2 * m - 2])


def required_bitstream_words(index: np.ndarray) -> int:
    """FORMAT.md, "Safe over-read": the least W a reader may accept."""
    if index.shape[0] == 0:
        return 0
    last = index[-1]
    max_offset = max(int(last[1 + lane // 2] >> (16 * (lane & 1))) & 0xFFFF for lane in range(32))
    return int(last[0]) + math.ceil((max_offset + LANE_ELEMENTS * MAX_CODE_LENGTH) / 32) + 2
