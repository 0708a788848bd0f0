"""One generation pass per dependency stage: requests from outside lm-eval join its pass.

lm-eval already sends the generation requests of every task of one `simple_evaluate` to the
engine in one `generate_until` call, which the engine sorts and batches. MT-Bench's first turn
needs no earlier answer, so it belongs in that same call rather than in a pass of its own after
it; only the second turn (which needs the first answer) waits for a second stage. `joined` adds
such requests to the next `generate_until` call of an engine and keeps their outputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

_ABSENT = object()  # "no instance attribute" (None could be a real one)


@dataclass
class JoinedRequests:
    """Requests to add to the next generation pass; `outputs` maps lm-eval's hash_args to text."""

    requests: Sequence[Any]
    outputs: dict[str, str] = field(default_factory=dict)
    passes_joined: int = 0

    @property
    def done(self) -> bool:
        return self.passes_joined > 0 or not self.requests


@contextlib.contextmanager
def joined(lm: Any, requests: Sequence[Any]) -> Iterator[JoinedRequests]:
    """Within the block, the first `lm.generate_until(reqs)` computes `reqs + requests` together.

    The call returns only what its caller asked for; the extra outputs land in `outputs`. Works
    for any lm-eval LM (and under lm-eval's CachingLM, which calls the wrapped LM's method).
    When no generation call happens in the block, nothing is computed: the caller falls back
    to a pass of its own.
    """
    from lm_eval.api.model import hash_args  # noqa: PLC0415 - heavy: lm-eval, only for a run

    state = JoinedRequests(list(requests))
    if not state.requests:
        yield state
        return
    original = lm.generate_until

    def generate_until(reqs: list[Any], *args: Any, **kwargs: Any) -> list[str]:
        if state.done:
            return original(reqs, *args, **kwargs)
        extra = list(state.requests)
        outputs = original(list(reqs) + extra, *args, **kwargs)
        state.passes_joined += 1
        for request, output in zip(extra, outputs[len(reqs):], strict=True):
            state.outputs[hash_args("generate_until", request.args)] = output
        return outputs[:len(reqs)]

    # An instance attribute may already stand in front of the class's method (an outer `joined`,
    # a wrapper): put back exactly what was there.
    shadowed = vars(lm).get("generate_until", _ABSENT) if hasattr(lm, "__dict__") else _ABSENT
    lm.generate_until = generate_until
    try:
        yield state
    finally:
        if shadowed is _ABSENT:
            del lm.generate_until  # the class's method again
        else:
            lm.generate_until = shadowed
