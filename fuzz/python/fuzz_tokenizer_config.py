"""atheris target: the JSON files of a model directory that slimrt's Python layer reads itself
(tokenizer_config.json, generation_config.json, chat_template.json) and what Tokenizer.from_dir
and read_chat_template take from them. The input's bytes become the three files (split at the
first two NUL bytes); whatever they hold, loading the directory's tokenizer and chat template
succeeds or raises FormatError. Anything else is a finding.

    python3 fuzz/python/fuzz_tokenizer_config.py -max_total_time=30 \
        fuzz/python/corpus/tokenizer_config
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris
from slimrt import chat_template, tokenizer
from slimrt.errors import FormatError
from slimrt.tokenizer import Tokenizer

# slimrt's package imports torch, which atheris would take minutes to instrument: only the
# functions under test are, where their callers look them up.
Tokenizer.from_dir = classmethod(atheris.instrument_func(Tokenizer.from_dir.__func__))
for module, names in (
    (
        tokenizer,
        ["read_tokenizer_config", "read_json_object", "read_text_file", "_token_text", "_ids"],
    ),
    (chat_template, ["read_chat_template"]),
):
    for name in names:
        setattr(module, name, atheris.instrument_func(getattr(module, name)))

DIRECTORY = Path(tempfile.mkdtemp(prefix="slimrt-fuzz-tokenizer-"))
FILES = ("tokenizer_config.json", "generation_config.json", "chat_template.json")


def write_tokenizer_json(path: Path) -> None:
    from tokenizers import Tokenizer as Backend
    from tokenizers import models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4}
    backend = Backend(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.save(str(path / "tokenizer.json"))


def test_one_input(data: bytes) -> None:
    parts = data.split(b"\0", 2)
    for i, name in enumerate(FILES):
        file = DIRECTORY / name
        if i < len(parts):
            file.write_bytes(parts[i])
        else:
            file.unlink(missing_ok=True)
    try:
        loaded = Tokenizer.from_dir(DIRECTORY, config={"eos_token_id": 2})
        template = chat_template.read_chat_template(
            DIRECTORY, tokenizer.read_tokenizer_config(DIRECTORY)
        )
    except FormatError:
        return
    if not all(isinstance(i, int) for i in loaded.eos_token_ids):
        raise AssertionError(f"eos ids {loaded.eos_token_ids!r}")
    if template is not None and not isinstance(template, str):
        raise AssertionError(f"chat template {template!r}")


if __name__ == "__main__":
    write_tokenizer_json(DIRECTORY)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
