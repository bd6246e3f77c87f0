"""Text <-> token ids, over the `tokenizers` library.

    tok = Tokenizer.from_dir("llama-dir")        # tokenizer.json + tokenizer_config.json
    ids = tok.encode("Hello")                      # BOS added when the tokenizer says so
    text = tok.decode(ids)
    stream = tok.detokenizer(prompt_ids)           # for streaming: never splits a character
    pieces = [stream.push(t) for t in new_ids] + [stream.flush()]

Decoding skips special tokens (`<|im_end|>`, `</s>`): generated text is what a user reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from slimrt.errors import FormatError, ModelError, RequestError
from slimrt.input_limits import MAX_JSON_FILE_BYTES

__all__ = ["Detokenizer", "Tokenizer", "check_text", "read_tokenizer_config"]

# Prompt tokens the detokenizer decodes along with each new one: SentencePiece decoders drop
# the leading space of the first token of a string, so a piece needs a few tokens before it.
_CONTEXT_TOKENS = 6


def check_text(text: str, name: str) -> None:
    """Raises RequestError naming `name` unless `text` is Unicode text the tokenizer can take:
    no lone surrogates. Python turns bytes that are not UTF-8 into lone surrogates U+DC80..U+DCFF
    where it decodes with surrogateescape (argv; stdin in the C locale), so those are reported as
    the bytes they were, at their offset in the UTF-8 text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        char = ord(text[e.start])
        if 0xDC80 <= char <= 0xDCFF:
            offset = len(text[: e.start].encode("utf-8"))
            raise RequestError(
                f"{name} is not valid UTF-8 text (byte 0x{char - 0xDC00:02x} at offset {offset})"
            ) from None
        raise RequestError(
            f"{name} is not valid Unicode text (lone surrogate U+{char:04X} at character {e.start})"
        ) from None


class Tokenizer:
    """A `tokenizers.Tokenizer` with the model's BOS/EOS.

    eos_token_ids holds every id that ends a generation: the tokenizer's EOS plus the ones
    config.json and generation_config.json add (Llama 3 ends turns with <|eot_id|>).
    """

    def __init__(
        self,
        backend: Any,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        eos_token_ids: Iterable[int] = (),
    ) -> None:
        self.backend = backend
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.bos_token_id = self._id_of(bos_token)
        ids = [self._id_of(eos_token), *eos_token_ids]
        self.eos_token_ids = tuple(dict.fromkeys(i for i in ids if i is not None))

    def _id_of(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    @property
    def vocab_size(self) -> int:
        """Ids the tokenizer can produce, added tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`. add_special_tokens applies the tokenizer's post-processor (the
        BOS of Llama-style models); chat templates write their own special tokens, so text
        rendered from one is encoded with add_special_tokens=False."""
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def detokenizer(self, prompt_ids: Sequence[int] = ()) -> Detokenizer:
        """An incremental decoder for the tokens generated after `prompt_ids`."""
        return Detokenizer(self, prompt_ids)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], config: dict | None = None) -> Tokenizer:
        """The tokenizer of a Hugging Face model directory: tokenizer.json for the vocabulary,
        tokenizer_config.json for BOS/EOS, config.json / generation_config.json for more EOS ids
        (pass the already-read config.json as `config`)."""
        from tokenizers import Tokenizer as Backend

        path = Path(path)
        file = path / "tokenizer.json"
        if not file.is_file():
            raise ModelError(
                f"{path}: no tokenizer.json (slimrt reads the fast-tokenizer file; write one with "
                "transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir))"
            )
        try:
            backend = Backend.from_file(str(file))
        except Exception as e:  # tokenizers raises a bare Exception for malformed files
            raise FormatError(f"{file}: cannot be read by the tokenizers library: {e}") from e
        settings = read_tokenizer_config(path)
        eos_ids = [
            *_ids(config.get("eos_token_id") if config else None),
            *_ids(read_json_object(path / "generation_config.json").get("eos_token_id")),
        ]
        return cls(
            backend,
            bos_token=_token_text(settings.get("bos_token")),
            eos_token=_token_text(settings.get("eos_token")),
            eos_token_ids=eos_ids,
        )


def read_tokenizer_config(path: Path) -> dict[str, Any]:
    """tokenizer_config.json of a directory ({} when it has none)."""
    return read_json_object(path / "tokenizer_config.json")


def read_json_object(file: Path) -> dict[str, Any]:
    """A JSON file holding an object ({} when there is no such file)."""
    if not file.is_file():
        return {}
    text = read_text_file(file)
    try:
        content = json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"{file}: not valid JSON ({e})") from e
    except RecursionError as e:  # json recurses once per level of nesting
        raise FormatError(f"{file}: not valid JSON (nested too deeply)") from e
    if not isinstance(content, dict):
        raise FormatError(f"{file}: not a JSON object")
    return content


def read_text_file(file: Path) -> str:
    """A small UTF-8 text file of a model directory (at most MAX_JSON_FILE_BYTES)."""
    size = file.stat().st_size
    if size > MAX_JSON_FILE_BYTES:
        raise FormatError(
            f"{file}: {size} bytes is too large (the limit is {MAX_JSON_FILE_BYTES} bytes)"
        )
    try:
        return file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{file}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def _token_text(value: object) -> str | None:
    # transformers writes special tokens as strings or as serialized AddedTokens.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _ids(value: object) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


class Detokenizer:
    """Turns generated token ids into text pieces as they arrive.

    A piece is given out only when it ends on a whole character: byte-level BPE splits
    multi-byte UTF-8 characters (emoji, CJK) over several tokens, and decoding a part of one
    yields U+FFFD. Each push decodes the text since the last piece with some earlier tokens
    before it, so SentencePiece spaces come out right (the technique of TGI and vLLM).
    """

    def __init__(self, tokenizer: Tokenizer, prompt_ids: Sequence[int] = ()) -> None:
        self._tokenizer = tokenizer
        self._ids = list(prompt_ids[-_CONTEXT_TOKENS:])
        self._prefix_offset = 0  # where the decoded context starts
        self._read_offset = len(self._ids)  # tokens before it have been given out

    def push(self, token_id: int) -> str:
        """The new text that token_id completes ("" while a character is still partial)."""
        self._ids.append(int(token_id))
        prefix, text = self._decode_pending()
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return text[len(prefix) :]
        return ""

    def flush(self) -> str:
        """What is still held back at the end of a generation (a partial character decodes to
        U+FFFD here: there will be no more bytes to complete it)."""
        prefix, text = self._decode_pending()
        self._prefix_offset = self._read_offset = len(self._ids)
        return text[len(prefix) :] if len(text) > len(prefix) else ""

    def _decode_pending(self) -> tuple[str, str]:
        decode = self._tokenizer.decode
        prefix = decode(self._ids[self._prefix_offset : self._read_offset])
        return prefix, decode(self._ids[self._prefix_offset :])
