"""Proxy bodies: Prefect's task engine calls them instead of the task's own function.

The runner keeps Prefect's task engine in the flow process for every invocation, so
states, retries, caching, logs and the UI behave as for any task. The engine is handed
a copy of the task whose function is a proxy (`proxy_task`): it takes the resolved
parameters exactly as the task's function would and returns what the function would
have returned. What happens inside is the scheduler's business:

* `InvocationBody` is the proxy of one invocation. It runs the attempts the runner
  hands it (`add_attempt`: the first one, a duplicate of a straggler, a re-plan after
  a backend refused, a retry when the task's own retries call the body again), each
  in a worker thread with its own configuration, and returns the first success; the
  other attempts' results are dropped. Where an attempt runs is the runner's
  `AttemptHooks.execute`: in this process, or on a remote backend, which gets the
  op body, its arguments and its configuration (large data by reference).
* `BatchCall` is one call of an op's batched body shared by the invocations the
  scheduler committed together: each invocation's body joins with its parameters
  and takes back its own slice of the output.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from llama_prefect.errors import (
    ConfigurationError,
    LlamaError,
    ReplanError,
    TransientError,
)

logger = logging.getLogger(__name__)

#: Seconds a batched call waits for all its members' task runs to join (ours); the
#: ones that joined run together, a later one runs alone.
BATCH_JOIN_S = 2.0
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
    signature, var_keyword = _signature(task.fn)
    if any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()):
        raise ConfigurationError(
            f"task {task.name!r} takes *args; an op body run by a proxy must take "
            "named parameters only"
        )

    @functools.wraps(task.fn)
    def proxy(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs).arguments
        named = {k: v for k, v in bound.items() if k not in var_keyword}
        for name in var_keyword:
            named.update(bound.get(name, {}))
        return body(**named)

    # Prefect binds a task run's parameters by the function's signature on every
    # call. Found through ``__wrapped__``, it is built twice over, for the proxy
    # and for the function it wraps, which cost a no-op task run more than the
    # scheduler's whole decision; given here, it is read as it is.
    proxy.__signature__ = signature  # type: ignore[attr-defined]
    clone = copy.copy(task)
    clone.fn = proxy
    return clone


@functools.lru_cache(maxsize=256)
def _signature(fn: Callable[..., Any]) -> tuple[inspect.Signature, tuple[str, ...]]:
    """The function's signature and the names of its ``**kwargs`` (one per op)."""
    signature = inspect.signature(fn)
    names = [n for n, p in signature.parameters.items() if p.kind is p.VAR_KEYWORD]
    return signature, tuple(names)


class AttemptHooks(Protocol):
    """What an `InvocationBody` needs from the runner."""

    def execute(
        self, attempt: Any, fn: Callable[..., Any], kwargs: dict[str, Any]
    ) -> Any:
        """Runs one attempt's body with its knobs; returns its output or raises."""
        ...

    def knobs(self, attempt: Any) -> dict[str, Any]:
        """The attempt's knob values that the body takes as parameters."""
        ...

    def ended(self, attempt: Any, error: BaseException | None) -> tuple[bool, bool]:
        """Reports an attempt's end: (its result is the invocation's, more may come)."""
        ...

    def withdrawn(self, attempt: Any) -> None:
        """Reports an attempt cancelled before it started: it never runs."""
        ...

    def refused(self, attempt: Any, error: ReplanError, refusals: int) -> bool:
        """Reports a refused attempt; True when the invocation is planned again."""
        ...

    def again(self, invocation_id: str) -> bool:
        """Asks for another attempt: the task's own retry called the body again.

        Returns False when none will come: the invocation has ended (a result was
        delivered and the engine failed after it).
        """
        ...


@dataclass
class Refusal:
    """An attempt a backend refused or could not finish."""

    backend: str
    error: str
    cost_usd: float


@dataclass
class _Outcome:
    attempt: Any
    value: Any = None
    error: BaseException | None = None
    won: bool = False
    more: bool = True
    refused: bool = False


@dataclass
class InvocationBody:
    """The proxy body of one invocation: its attempts, the first success wins.

    Attributes:
        invocation_id: The invocation (task run) id.
        fn: The op's own body.
        hooks: The runner's side.
        workers: An executor for the attempts (the engine's thread waits here).
        straggler_factor: How many times its own time an injected straggler takes.
        batches: Batched calls of the run by call id, shared by the bodies; a
            member takes the call out once it has run.
        started: Ids of the attempts this body started.
        refusals: Attempts a backend refused, in order.
        billed: What remote backends billed each attempt, by attempt id.
        details: What each attempt's remote backend said about it, by attempt id.
        body_s: Seconds each attempt spent in the op's body (or its batched or
            remote call), by attempt id; an injected straggler's wait is left out.
        calls: How many times the engine called the body (1 + the task's retries).
    """

    invocation_id: str
    fn: Callable[..., Any]
    hooks: AttemptHooks
    workers: Any
    straggler_factor: float
    batches: dict[int, BatchCall]
    started: set[str] = field(default_factory=set)
    refusals: list[Refusal] = field(default_factory=list)
    billed: dict[str, float] = field(default_factory=dict)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    body_s: dict[str, float] = field(default_factory=dict)
    calls: int = 0
    _events: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    _stops: dict[str, threading.Event] = field(default_factory=dict)
    _delivered: bool = False
    _value: Any = None
    _interrupt: BaseException | None = None

    def add_attempt(self, attempt: Any) -> None:
        """Hands the body a committed attempt to start."""
        self._stops[attempt.id] = threading.Event()
        self._events.put(attempt)

    def cancel(self, attempt_id: str) -> None:
        """Stops an attempt the scheduler cancelled, as far as it can be stopped.

        One that has not started never runs; an injected straggler's wait ends at
        once. An op body already running cannot be stopped: it runs on, and its
        result is dropped.
        """
        stop = self._stops.get(attempt_id)
        if stop is not None:
            stop.set()

    def interrupt(self, error: BaseException) -> None:
        """Ends the body at an interrupt of the run: `error` goes to the engine.

        No attempt starts any more; one already running cannot be stopped (it is a
        thread): it runs on and its result is dropped. The engine's call of the body,
        now or later, raises `error`.
        """
        self._interrupt = error
        for stop in self._stops.values():
            stop.set()
        self._events.put(_Outcome(None, error=error, more=False))

    def __call__(self, **params: Any) -> Any:
        if self._interrupt is not None:
            raise self._interrupt
        if self.calls and not self.hooks.again(self.invocation_id):
            # The engine retries after a result was delivered (it failed later, as
            # in persisting it): the result stands, no attempt is made for it.
            if self._delivered:
                return self._value
            raise LlamaError(
                f"invocation {self.invocation_id} has ended without a result; the "
                "task's retry has no attempt to run (a bug: please report it)"
            )
        self.calls += 1
        context = contextvars.copy_context()
        while True:
            event = self._events.get()
            if not isinstance(event, _Outcome):
                if self._interrupt is not None:
                    continue  # its stop is set: it would not run
                self.started.add(event.id)
                # One context may be entered by one thread at a time: each attempt
                # gets its own copy of the engine's (task run, logger, meter).
                self.workers.submit(context.copy().run, self._run, event, params)
                continue
            if event.won:
                self._delivered, self._value = True, event.value
                return event.value
            if event.error is not None and not event.more:
                raise event.error

    def _run(self, attempt: Any, params: dict[str, Any]) -> None:
        if self._stops[attempt.id].is_set():
            self.hooks.withdrawn(attempt)  # cancelled before it could start
            return
        try:
            value = self._attempt(attempt, params)
        except ReplanError as exc:
            self.refusals.append(Refusal(exc.backend, str(exc), exc.cost_usd))
            if self.hooks.refused(attempt, exc, len(self.refusals)):
                logger.info("%s: %s; planning it again", attempt.op, exc)
                self._events.put(_Outcome(attempt, refused=True))
                return
            self._fail(attempt, self._last_refusal(attempt, exc))
            return
        except BaseException as exc:  # the waiting body raises it for the engine
            self._fail(attempt, exc)
            return
        won, more = self.hooks.ended(attempt, None)
        self._events.put(_Outcome(attempt, value=value, won=won, more=more))

    def _fail(self, attempt: Any, error: BaseException) -> None:
        won, more = self.hooks.ended(attempt, error)
        self._events.put(_Outcome(attempt, error=error, more=more))

    def _last_refusal(self, attempt: Any, exc: ReplanError) -> ReplanError:
        """The error a refused invocation fails with when it is not planned again."""
        if len(self.refusals) <= MAX_REPLANS:
            return exc  # no backend left to try: the backend's own reason
        error = ReplanError(
            f"{attempt.op}: refused {len(self.refusals)} times, last by "
            f"{exc.backend} ({exc}); check the backends' capacity",
            backend=exc.backend,
        )
        error.__cause__ = exc
        return error

    def _attempt(self, attempt: Any, params: dict[str, Any]) -> Any:
        # Injected faults happen on the first attempt only, so the tries after it
        # show how the run recovers.
        injected = attempt.injected if attempt.number == 1 else None
        if injected == "failure":
            raise TransientError(
                f"injected failure of a {attempt.op} try (inject_failure_rate); it "
                "is tried again"
            )
        kwargs = {**params, **self.hooks.knobs(attempt)}
        start_s = time.monotonic()
        batch = self.batches.get(id(attempt.call))
        if batch is not None and batch.call is attempt.call:
            value = batch.join(self.invocation_id, kwargs)
            self.batches.pop(id(attempt.call), None)  # it ran: later ones run alone
        else:
            value = self.hooks.execute(attempt, self.fn, kwargs)
        spent_s = time.monotonic() - start_s
        self.body_s[attempt.id] = spent_s
        if injected == "straggler":
            self._stops[attempt.id].wait(max(0.0, self.straggler_factor - 1) * spent_s)
        return value


class BatchCall:
    """One call of a batched op body shared by several invocations' attempts.

    Each member joins with its parameters; when all have joined (or `BATCH_JOIN_S`
    after the first did) the last to join runs the op's batched body on the list, and
    every member takes its own element of the output. A member that comes after the
    call ran runs alone.

    Args:
        call: The scheduler's call the members were committed in (kept, so that
            its id names this batch while it lives).
        members: Invocation ids of the call.
        batch_fn: The op's body over a list of parameter sets.
        fn: The op's body for one.
    """

    def __init__(
        self,
        call: Any,
        members: list[str],
        batch_fn: Callable[[list[dict[str, Any]]], list[Any]],
        fn: Callable[..., Any],
    ) -> None:
        self.call = call
        self.members = list(members)
        self.batch_fn, self.fn = batch_fn, fn
        self._cond = threading.Condition()
        self._joined: dict[str, dict[str, Any]] = {}
        self._results: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._closed = False

    def join(self, member: str, kwargs: dict[str, Any]) -> Any:
        """Adds this member's parameters; returns its slice of the batched output."""
        with self._cond:
            if self._closed:
                late = True
            else:
                late = False
                self._joined[member] = kwargs
                if len(self._joined) < len(self.members):
                    self._cond.wait_for(lambda: self._closed, timeout=BATCH_JOIN_S)
                runs_it = not self._closed
                self._closed = True
        if late:
            return self.fn(**kwargs)
        if runs_it:
            self._run()
        with self._cond:
            self._cond.wait_for(
                lambda: self._results is not None or self._error is not None
            )
            if self._error is not None:
                raise self._error
            assert self._results is not None
            return self._results[member]

    def _run(self) -> None:
        names = list(self._joined)
        try:
            outputs = list(self.batch_fn([self._joined[n] for n in names]))
            if len(outputs) != len(names):
                raise ConfigurationError(
                    f"a batched body returned {len(outputs)} outputs for {len(names)} "
                    "inputs; it must return one output per input, in order"
                )
            results, error = dict(zip(names, outputs, strict=True)), None
        except BaseException as exc:
            results, error = None, exc
        with self._cond:
            self._results, self._error = results, error
            self._cond.notify_all()
