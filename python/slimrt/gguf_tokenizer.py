"""The tokenizer a GGUF file describes in its tokenizer.ggml.* metadata, rebuilt as a
`tokenizers.Tokenizer`.

    tokenizer = gguf_tokenizer(metadata, where="model.gguf")

Supported: byte-level BPE (tokenizer.ggml.model = "gpt2": GPT-2, SmolLM, StarCoder, Llama 3).
The text is split before BPE as llama.cpp splits it for the file's tokenizer.ggml.pre, which
is how the model's own tokenizer.json splits it: SmolLM cuts digits apart, Llama 3 uses its
own regex. CONTROL tokens (<|im_start|>) become special tokens, USER_DEFINED ones added tokens,
both matched whole in text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slimrt.errors import ModelError
from slimrt.tokenizer import Tokenizer

__all__ = ["gguf_tokenizer"]

# llama.cpp's token types (llama_token_type).
_CONTROL = 3
_USER_DEFINED = 4


def _split(digits: str) -> str:
    """The regex Llama 3 and Qwen2 split text with before BPE; they differ in how many digits
    one piece holds (`digits`)."""
    return (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
        + digits
        + r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    )


# tokenizer.ggml.pre -> how text is split before BPE (llama.cpp's llama-vocab.cpp groups).
_GPT2_PRE = ("default", "gpt-2", "gpt2")
_DIGITS_PRE = ("smollm", "starcoder", "refact", "codeshell", "exaone", "minerva", "command-r")
_LLAMA3_PRE = ("llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe", "dbrx")
_QWEN2_PRE = ("qwen2",)
_SPLITS = {**dict.fromkeys(_LLAMA3_PRE, _split("{1,3}")), **dict.fromkeys(_QWEN2_PRE, _split(""))}


def strings(value: object) -> list[str] | None:
    """A string array of the core's GGUF metadata ((UTF-8 blob, offsets): one object for the
    whole array) as a list of str; None when absent."""
    if value is None:
        return None
    blob, offsets = value  # type: ignore[misc]
    ends = offsets.tolist()
    return [blob[ends[i] : ends[i + 1]].decode("utf-8", "replace") for i in range(len(ends) - 1)]


def gguf_tokenizer(metadata: Mapping[str, Any], *, where: str) -> Tokenizer:
    """The Tokenizer of a GGUF file, from its metadata (the core's Model.metadata())."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
    from tokenizers import Tokenizer as Backend

    kind = metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ModelError(
            f"{where}: GGUF tokenizer {kind!r} is not supported; slimrt reads 'gpt2' "
            "(byte-level BPE) tokenizers"
        )
    tokens = strings(metadata.get("tokenizer.ggml.tokens"))
    merges = strings(metadata.get("tokenizer.ggml.merges"))
    if not tokens or merges is None:
        raise ModelError(f"{where}: GGUF has no tokenizer.ggml.tokens / tokenizer.ggml.merges")
    pairs = []
    for merge in merges:
        pair = merge.split(" ")
        if len(pair) != 2:  # byte-level tokens spell spaces as Ġ, so a merge has one space
            raise ModelError(f"{where}: malformed tokenizer.ggml.merges entry {merge!r}")
        pairs.append((pair[0], pair[1]))
    pre = metadata.get("tokenizer.ggml.pre", "default")

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _GPT2_PRE:
        pre_tokenizer = byte_level
    elif pre in _DIGITS_PRE:
        pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    elif pre in _SPLITS:
        pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_SPLITS[pre]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        supported = ", ".join(_GPT2_PRE + _DIGITS_PRE + _LLAMA3_PRE + _QWEN2_PRE)
        raise ModelError(
            f"{where}: GGUF pre-tokenizer {pre!r} is not supported (slimrt knows {supported})"
        )

    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ModelError(f"{where}: tokenizer.ggml.tokens lists a token twice")
    backend = Backend(
        models.BPE(
            vocab=vocab,
            merges=pairs,
            fuse_unk=False,
            byte_fallback=False,
            # Llama 3's tokenizer.json looks whole words up before merging.
            ignore_merges=pre in _LLAMA3_PRE,
        )
    )
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.ByteLevel()

    token_types = metadata.get("tokenizer.ggml.token_type")
    types = [] if token_types is None else token_types.tolist()
    special = [
        AddedToken(tokens[i], special=True, normalized=False)
        for i, t in enumerate(types)
        if t == _CONTROL
    ]
    added = [
        AddedToken(tokens[i], special=False, normalized=False)
        for i, t in enumerate(types)
        if t == _USER_DEFINED
    ]
    backend.add_special_tokens(special)
    backend.add_tokens(added)

    def token_at(key: str) -> str | None:
        index = metadata.get(key)
        if index is None:
            return None
        if not 0 <= index < len(tokens):
            raise ModelError(f"{where}: {key}={index} is outside the vocabulary")
        return tokens[index]

    bos = token_at("tokenizer.ggml.bos_token_id")
    eos = token_at("tokenizer.ggml.eos_token_id")
    # Converters write the flag; a byte-level BPE file without it gets no BOS, as in
    # transformers' GGUF loading (GPT-2 tokenizers add none).
    if metadata.get("tokenizer.ggml.add_bos_token", False) and bos is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, vocab[bos])],
        )
    # End-of-turn tokens (Llama 3's <|eot_id|>) end a generation as EOS does.
    extra_eos = [
        metadata[key]
        for key in ("tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")
        if metadata.get(key) is not None
    ]
    return Tokenizer(backend, bos_token=bos, eos_token=eos, eos_token_ids=extra_eos)
