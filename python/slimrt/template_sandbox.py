"""A Jinja environment for templates that come with downloaded models: Jinja's immutable
sandbox (no access to Python internals, no mutation of the values passed in) with bounds on
the text it builds and the time it runs.

    env = BoundedSandbox(max_chars=MAX_TEMPLATE_CHARS, max_seconds=MAX_TEMPLATE_SECONDS)
    text = env.render(env.from_string(source), messages=[...])   # TemplateLimitError past a bound

Text: every string a template makes by `*`, `%`, `+`, `~`, a filter or a method call is checked
against max_chars; the operations whose result can be far larger than their operands
(repetition, padding to a width, replace, join, format widths) are checked before they run, the
others (whose result is at most their operands together) after. Time: every operation, output
chunk and attribute access checks the deadline, and a watchdog thread raises TemplateLimitError
inside the rendering thread when it passes, so that even a loop that does nothing stops.
"""

from __future__ import annotations

import ctypes
import functools
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import jinja2
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["BoundedSandbox", "TemplateLimitError"]


class TemplateLimitError(jinja2.TemplateError):
    """A template built too much text or ran too long."""


# Digit runs in a format string: a width or precision this long pads past any bound.
_DIGITS = re.compile(r"\d+")


class _Budget(threading.local):
    deadline = float("inf")
    max_chars = 0


class _CheckedCodeGenerator(CodeGenerator):
    # `a ~ b` compiles to a join Jinja does not route through the environment; this one does,
    # so that doubling a string in a loop meets the bound.
    def visit_Concat(self, node: Any, frame: Any) -> None:
        self.write("environment.concat_checked((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _CheckedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *, max_chars: int, max_seconds: float, **options: Any) -> None:
        super().__init__(**options)
        self.max_chars = max_chars
        self.max_seconds = max_seconds
        self._budget = _Budget()
        for name, function in list(self.filters.items()):
            self.filters[name] = self._bounded_filter(name, function)

    def render(self, template: jinja2.Template, **variables: Any) -> str:
        """template's text for `variables`, within the bounds (TemplateLimitError beyond)."""
        budget = self._budget
        budget.max_chars = self.max_chars
        budget.deadline = time.monotonic() + self.max_seconds
        watchdog = _Watchdog(threading.get_ident(), self.max_seconds)
        try:
            try:
                parts: list[str] = []
                length = 0
                for part in template.generate(**variables):
                    length += len(part)
                    self._check_length(length, "its output")
                    self._tick()
                    parts.append(part)
                return "".join(parts)
            finally:
                budget.deadline = float("inf")
                watchdog.stop()
        except _WatchdogTimeout as e:
            raise TemplateLimitError(self._timeout_message()) from e

    # -- what the compiled template calls --------------------------------------------------

    def concat_checked(self, parts: Iterable[Any]) -> str:
        self._tick()
        text = "".join(map(str, parts))
        self._check_length(len(text), "a string")
        return text

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self._tick()
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
                    self._check_length(len(sequence) * max(count, 0), "a repeated value")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            # An integer's digits are text too, once printed: 2 ** 10 ** 9 never finishes.
            self._check_length(abs(left).bit_length() * max(right, 0) // 3, "a power's digits")
        elif operator == "%" and isinstance(left, str):
            self._check_format(left)
        return self._checked(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self._tick()
        __self._check_arguments(args, kwargs)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            __self._check_str_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return __self._checked(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # The sandbox's str.format and str.format_map, which it hands out on attribute access.
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__

        def bounded(*args: Any, **kwargs: Any) -> str:
            self._tick()
            self._check_format(text)
            return self._checked(wrapped(*args, **kwargs))

        return bounded

    def getattr(self, obj: Any, attribute: str) -> Any:
        self._tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self._tick()
        return super().getitem(obj, argument)

    # -- checks ----------------------------------------------------------------------------

    def _tick(self) -> None:
        if time.monotonic() > self._budget.deadline:
            raise TemplateLimitError(self._timeout_message())

    def _timeout_message(self) -> str:
        return f"the template ran longer than {self.max_seconds:g} seconds"

    def _check_length(self, length: int, what: str) -> None:
        if length > self._budget.max_chars:
            raise TemplateLimitError(
                f"{what} would be longer than {self._budget.max_chars} characters"
            )

    def _checked(self, value: Any) -> Any:
        if isinstance(value, (str, list, tuple)):
            self._check_length(len(value), "a value")
        return value

    def _check_arguments(self, args: Iterable[Any], kwargs: dict[str, Any]) -> None:
        # Widths and counts (center, indent, ljust, zfill, batch, slice, wordwrap...) make text
        # or lists of that size.
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool):
                self._check_length(value, "a width or count")

    def _check_format(self, text: str) -> None:
        for digits in _DIGITS.findall(text):
            if len(digits) > len(str(self._budget.max_chars)):
                raise TemplateLimitError(f"format string {text[:40]!r} has a width too large")
            self._check_length(int(digits), "a formatted width")

    def _check_replace(self, text: str, old: Any, new: Any) -> None:
        if isinstance(old, str) and isinstance(new, str):
            count = text.count(old) if old else len(text) + 1
            self._check_length(len(text) + count * len(new), "a replaced string")

    def _check_join(self, separator: Any, items: list[Any]) -> None:
        if isinstance(separator, str):
            self._check_length(max(len(items) - 1, 0) * len(separator), "a joined string")

    def _check_str_method(
        self, text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        if name == "replace" and len(args) >= 2:
            self._check_replace(text, args[0], args[1])
        elif name == "join" and args and isinstance(args[0], (list, tuple)):
            self._check_join(text, list(args[0]))
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(size, int):
                self._check_length(text.count("\t") * size + len(text), "an expanded string")

    def _bounded_filter(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)  # keeps Jinja's pass_context/pass_eval_context marks
        def bounded(*args: Any, **kwargs: Any) -> Any:
            self._tick()
            self._check_arguments(args, kwargs)
            # Jinja's signatures: replace(eval_ctx, s, old, new), join(eval_ctx, value, d),
            # indent(s, width), format(value, *args).
            if name == "replace" and len(args) >= 4 and isinstance(args[1], str):
                self._check_replace(args[1], args[2], args[3])
            elif name == "join" and len(args) >= 2 and not isinstance(args[1], (str, dict)):
                if isinstance(args[1], Iterable):
                    args = (args[0], list(args[1]), *args[2:])
                    separator = args[2] if len(args) > 2 else kwargs.get("d", "")
                    self._check_join(separator, args[1])
            elif name == "indent" and args and isinstance(args[0], str):
                width = args[1] if len(args) > 1 else kwargs.get("width")
                if isinstance(width, str):
                    self._check_length(args[0].count("\n") * len(width), "an indented string")
            elif name == "format" and args and isinstance(args[0], str):
                self._check_format(args[0])
            return self._checked(function(*args, **kwargs))

        return bounded


class _WatchdogTimeout(BaseException):
    # Raised asynchronously inside the rendering thread; a BaseException so that no except
    # clause of Jinja's or of a filter swallows it on the way out.
    pass


class _Watchdog:
    """Raises _WatchdogTimeout in thread `ident` after `seconds`, unless stopped first."""

    def __init__(self, ident: int, seconds: float) -> None:
        self._ident = ident
        self._lock = threading.Lock()
        self._fired = False
        self._stopped = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._fired = True
            _set_async_exception(self._ident, _WatchdogTimeout)

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._stopped = True
            fired = self._fired
        if fired:
            # Not delivered yet (the thread was between bytecodes that check): take it back and
            # raise it here, where the caller's except clause sees it.
            _set_async_exception(self._ident, None)
            raise _WatchdogTimeout


def _set_async_exception(ident: int, exception: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(exception) if exception else None
    )
