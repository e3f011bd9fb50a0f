"""Proxy bodies: let Prefect's task engine call something other than the task's own
function, with the same signature.

The runner keeps Prefect's task engine in the flow process for every invocation
(states, retries, caching, logs and the UI behave as for any task). Where the body
must run elsewhere, on a remote backend or inside a shared batched call, the engine
is handed a copy of the task whose function is a proxy: it takes the resolved
parameters exactly as the task's function would, and returns what the function would
have returned. `proxy_task` makes that copy; the proxy decides where the work runs.

`ReplanningBody` is the proxy for remote backends: it runs the invocation on the
backend its plan chose and, when that backend cannot take or finish it
(`ReplanError`), asks for a new plan and runs it there, inside the same task run.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llama_prefect.backends.base import RemoteBackend, RemoteCall
from llama_prefect.core.pipeline import Configuration
from llama_prefect.errors import ConfigurationError, ReplanError
from llama_prefect.wire import ref_of

logger = logging.getLogger(__name__)

#: Refusals after which an invocation fails instead of being planned again (ours).
MAX_REPLANS = 5


def proxy_task(task: Any, body: Callable[..., Any]) -> Any:
    """A copy of Prefect task `task` whose engine calls `body` instead of its function.

    The proxy keeps the function's name, signature and source (``functools.wraps``),
    so parameter binding, the task run's name and cache keys stay as for `task`.
    `body` is always called with keyword arguments only, bound by the function's
    signature (the engine passes positional ones too).

    Raises:
        ConfigurationError: The function takes ``*args``, which cannot be named.
    """
    signature = inspect.signature(task.fn)
    if any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()):
        raise ConfigurationError(
            f"task {task.name!r} takes *args; an op body run by a proxy must take "
            "named parameters only"
        )

    @functools.wraps(task.fn)
    def proxy(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs).arguments
        named = {k: v for k, v in bound.items() if k not in _var_keyword(signature)}
        for name in _var_keyword(signature):
            named.update(bound.get(name, {}))
        return body(**named)

    clone = copy.copy(task)
    clone.fn = proxy
    return clone


def _var_keyword(signature: inspect.Signature) -> list[str]:
    return [n for n, p in signature.parameters.items() if p.kind is p.VAR_KEYWORD]


@dataclass
class Attempt:
    """One try of an invocation that a backend refused or could not finish."""

    backend: str
    error: str
    cost_usd: float


@dataclass
class ReplanningBody:
    """Runs one invocation where its plan says, planning again when a backend fails it.

    Attributes:
        task: The Prefect task (its ``fn`` is the op body).
        op: The pipeline op.
        invocation_id: The task run id.
        remote: Remote backends by name; any other backend runs the body here.
        current: Returns the invocation's current configuration and predicted
            latency (its committed plan).
        replan: Called with the `ReplanError`; returns once the invocation is
            committed again (the scheduler may move it to another backend), or
            raises it again when no backend is left to try.
        knobs_for: Maps a configuration's knobs to the body's keyword arguments.
    """

    task: Any
    op: str
    invocation_id: str
    remote: Mapping[str, RemoteBackend]
    current: Callable[[], tuple[Configuration, float]]
    replan: Callable[[ReplanError], None]
    knobs_for: Callable[[Configuration], dict[str, Any]]
    attempts: list[Attempt] = field(default_factory=list)
    cost_usd: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __call__(self, **kwargs: Any) -> Any:
        while True:
            config, predicted_s = self.current()
            call_kwargs = {**kwargs, **self.knobs_for(config)}
            backend = self.remote.get(config.backend)
            if backend is None:
                self.cost_usd = None  # the scheduler prices local work itself
                return self.task.fn(**call_kwargs)
            try:
                return self._run_remote(backend, config, predicted_s, call_kwargs)
            except ReplanError as exc:
                self.attempts.append(Attempt(exc.backend, str(exc), exc.cost_usd))
                if len(self.attempts) > MAX_REPLANS:
                    raise ReplanError(
                        f"{self.op}: refused {len(self.attempts)} times, last by "
                        f"{exc.backend} ({exc}); check the backends' capacity",
                        backend=exc.backend,
                    ) from exc
                logger.info("%s: %s; planning it again", self.op, exc)
                self.replan(exc)

    def _run_remote(
        self,
        backend: RemoteBackend,
        config: Configuration,
        predicted_s: float,
        kwargs: dict[str, Any],
    ) -> Any:
        call = RemoteCall(
            invocation_id=self.invocation_id,
            op=self.op,
            function=ref_of(self.task.fn),
            kwargs=kwargs,
            config=config,
            predicted_s=predicted_s,
            attempt=len(self.attempts),
        )
        outcome = backend.run(call)
        self.cost_usd, self.details = outcome.cost_usd, dict(outcome.details)
        return outcome.value

    def failed_cost_usd(self) -> float:
        """What the refused or unfinished attempts were billed, in dollars."""
        return sum(a.cost_usd for a in self.attempts)
