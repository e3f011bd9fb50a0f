"""When a failed invocation is tried again: transient failures yes, deterministic no.

A pipeline's tasks take `retry_transient` as Prefect's ``retry_condition_fn`` with
``retries=TRANSIENT_RETRIES``: Prefect's task engine then retries a task run whose
error `llama_prefect.errors.is_deterministic` calls transient (a lost decode worker,
an I/O error) and ends at once one that would fail the same way again (a corrupt
video, a bad knob). Each retry is counted on the invocation's meter, so the run
report shows it.
"""

from __future__ import annotations

from typing import Any

from llama_prefect import metering
from llama_prefect.errors import is_deterministic

__all__ = ["TRANSIENT_RETRIES", "error_of", "retry_transient"]

#: Retries of a transiently failed invocation (ours).
TRANSIENT_RETRIES = 2


def error_of(state: Any) -> BaseException | None:
    """The exception a failed Prefect state holds, or None when it holds none."""
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False)
    except Exception as exc:  # an unreadable result: the error is the reading
        return exc
    return result if isinstance(result, BaseException) else None


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: True for a transient failure, False otherwise.

    Args:
        task: The Prefect task (unused).
        task_run: Its task run (unused).
        state: The Failed state of the try that just ended.
    """
    error = error_of(state)
    retry = error is not None and not is_deterministic(error)
    if retry:
        metering.current().add_retry()
    return retry
