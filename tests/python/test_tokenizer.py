"""Tokenizer: HF directories, GGUF metadata (against transformers' own GGUF tokenizer) and the
streaming detokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slimrt.errors import FormatError, ModelError, RequestError
from slimrt.input_limits import MAX_JSON_FILE_BYTES
from slimrt.tokenizer import Tokenizer, check_text, read_tokenizer_config
from tiny_models import write_tokenizer

SAMPLES = [
    "Hello world!",
    "The capital of France is Paris.",
    "  two leading spaces\n\nand blank lines\t tabs",
    "héllo wörld — naïve café, 東京, 🙂🚀",
    "12345 + 678 = 13023",
    "def f(x):\n    return x ** 2  # square",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "don't won't they're I'm we'll you'd",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tok")
    write_tokenizer(path)
    return path


def test_hf_tokenizer_adds_bos_through_its_post_processor_and_round_trips(tiny_dir: Path) -> None:
    tok = Tokenizer.from_dir(tiny_dir)
    assert tok.bos_token == "<s>" and tok.bos_token_id == 0
    ids = tok.encode("The quick brown fox")
    assert ids[0] == 0 and 0 not in ids[1:]
    assert tok.encode("The quick brown fox", add_special_tokens=False) == ids[1:]
    assert tok.decode(ids) == "The quick brown fox"
    assert tok.decode(ids, skip_special_tokens=False) == "<s>The quick brown fox"


def test_eos_ids_gather_tokenizer_config_and_generation_config(tiny_dir: Path) -> None:
    (tiny_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 3]}))
    try:
        tok = Tokenizer.from_dir(tiny_dir, {"eos_token_id": 2})
    finally:
        (tiny_dir / "generation_config.json").unlink()
    assert tok.eos_token == "</s>"
    assert tok.eos_token_ids == (1, 2, 3)  # tokenizer's EOS first, no repeats


def test_a_directory_without_tokenizer_json_is_refused_with_advice(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no tokenizer\.json .*save_pretrained"):
        Tokenizer.from_dir(tmp_path)


def stream_pieces(tok: Tokenizer, prompt_ids: list[int], ids: list[int]) -> list[str]:
    detok = tok.detokenizer(prompt_ids)
    pieces = [detok.push(i) for i in ids]
    return [*pieces, detok.flush()]


def test_streaming_never_splits_a_character(smollm2) -> None:
    tok = smollm2.tokenizer
    text = "Emoji 🙂🚀 and 東京 in a row: ✓"
    ids = tok.encode(text)
    # Byte-level BPE cuts these characters into several tokens each.
    assert any("\ufffd" in tok.decode([i]) for i in ids)
    pieces = stream_pieces(tok, [], ids)
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_streamed_pieces_add_up_to_the_decoded_text(text: str) -> None:
    tok = _TINY.get()
    ids = tok.encode(text, add_special_tokens=False)
    assert "".join(stream_pieces(tok, tok.encode("Once upon"), ids)) == tok.decode(ids)


class _TinyTokenizer:
    # Hypothesis tests cannot take function-scoped fixtures; build the tokenizer once here.
    tokenizer: Tokenizer | None = None

    def get(self) -> Tokenizer:
        if self.tokenizer is None:
            import tempfile

            path = Path(tempfile.mkdtemp())
            write_tokenizer(path)
            self.tokenizer = Tokenizer.from_dir(path)
        return self.tokenizer


_TINY = _TinyTokenizer()


def test_streaming_keeps_sentencepiece_spaces_that_decoding_alone_drops() -> None:
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, pre_tokenizers, trainers

    backend = Backend(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>"], show_progress=False)
    backend.train_from_iterator(["Hello world again and again, hello world"] * 10, trainer)
    tok = Tokenizer(backend)
    prompt = tok.encode("Hello")
    generated = tok.encode("Hello world again")[len(prompt) :]
    # Decoded alone, the first generated token loses its space; after the prompt it keeps it.
    assert tok.decode(generated) == "world again"
    assert "".join(stream_pieces(tok, prompt, generated)) == " world again"


def test_gguf_tokenizer_matches_transformers_gguf_tokenizer(smollm2, smollm2_gguf: Path) -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
    tok = smollm2.tokenizer
    for text in SAMPLES:
        ids = tok.encode(text)
        assert ids == reference.encode(text), text
        assert tok.decode(ids) == reference.decode(ids, skip_special_tokens=True), text
    assert (tok.bos_token, tok.eos_token) == (reference.bos_token, reference.eos_token)
    assert (tok.bos_token_id, tok.eos_token_ids) == (1, (2,))
    assert tok.vocab_size == len(reference) == 49152


def test_gguf_smollm_tokenizer_splits_digits_as_llama_cpp_does(smollm2) -> None:
    # tokenizer.ggml.pre = "smollm": every digit is its own token, whatever the merges say.
    tok = smollm2.tokenizer
    ids = tok.encode("2024")
    assert [tok.decode([i]) for i in ids] == ["2", "0", "2", "4"]
    # Special tokens are matched whole in text.
    assert tok.encode("<|im_start|>") == [1]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=24))
def test_bytes_that_are_not_utf8_are_named_at_their_offset(data: bytes) -> None:
    # What Python makes of such bytes in argv (and stdin in the C locale): lone surrogates.
    text = data.decode("utf-8", "surrogateescape")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        expected = (
            f"prompt is not valid UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        )
        with pytest.raises(RequestError) as info:
            check_text(text, "prompt")
        assert str(info.value) == expected
    else:
        check_text(text, "prompt")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ok \ud83d", "x is not valid Unicode text (lone surrogate U+D83D at character 3)"),
        ("\udfff", "x is not valid Unicode text (lone surrogate U+DFFF at character 0)"),
        ("\udc7f", "x is not valid Unicode text (lone surrogate U+DC7F at character 0)"),
        ("🙂\udc80", "x is not valid UTF-8 text (byte 0x80 at offset 4)"),
    ],
)
def test_lone_surrogates_are_refused(text: str, message: str) -> None:
    with pytest.raises(RequestError) as info:
        check_text(text, "x")
    assert str(info.value) == message


def test_text_with_any_valid_character_passes() -> None:
    check_text("héllo 東京 🙂 \x00 \ufffd \U0010ffff", "prompt")


def test_a_tokenizer_config_past_the_size_cap_is_refused_unread(tmp_path: Path) -> None:
    file = tmp_path / "tokenizer_config.json"
    file.write_bytes(b"{}" + b" " * (MAX_JSON_FILE_BYTES - 1))
    with pytest.raises(FormatError) as info:
        read_tokenizer_config(tmp_path)
    assert str(info.value) == f"{file}: 16777217 bytes is too large (the limit is 16777216 bytes)"
    file.write_bytes(b"{}" + b" " * (MAX_JSON_FILE_BYTES - 2))
    assert read_tokenizer_config(tmp_path) == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[" * 100_000, "not valid JSON (nested too deeply)"),
        (b'{"bos_token": "\xff"}', "not UTF-8 text (invalid start byte at byte 15)"),
        (b"[1]", "not a JSON object"),
        (
            b"{",
            "not valid JSON (Expecting property name enclosed in double quotes: line 1 "
            "column 2 (char 1))",
        ),
    ],
)
def test_a_bad_tokenizer_config_is_a_format_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    file = tmp_path / "tokenizer_config.json"
    file.write_bytes(content)
    with pytest.raises(FormatError) as info:
        read_tokenizer_config(tmp_path)
    assert str(info.value) == f"{file}: {message}"
