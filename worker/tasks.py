"""The Celery tasks of a worker: they hand pairs to the micro-batcher and return logits and token counts."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from celery import Celery, current_task, signals

from shared.celery_app import RANK_TASK, create_celery_app
from shared.errors import ErrorAnswer, ErrorType, RerankError
from shared.schemas import RankResult, RankTask
from shared.settings import get_settings
from shared.task_keys import TASK_KEY_TTL_SLACK, task_cancelled_key, task_worker_key
from worker.batching import DeadlineExceeded, MicroBatcher
from worker.runtime import CrossEncoder, EncodedPair

log = logging.getLogger(__name__)

app: Celery = create_celery_app(get_settings())


@dataclass
class WorkerState:
    """What the tasks of this process share: the model and its micro-batcher."""

    model_id: str
    encoder: CrossEncoder
    batcher: MicroBatcher


_state: WorkerState | None = None


def current_state() -> WorkerState:
    """This process's model and batcher; UNAVAILABLE until the entrypoint has installed them."""
    if _state is None:
        raise RerankError(ErrorType.UNAVAILABLE, "the worker has not finished loading its model")
    return _state


def install_state(state: WorkerState) -> None:
    """Called once by the worker entrypoint after the model is loaded, before tasks are consumed."""
    global _state
    _state = state


def fleet_task(name: str, **options: Any) -> Callable:
    """The one task decorator of the project: name, JSON in and out, errors answered in the taxonomy.

    A task returns {"ok": ...}, or raises ErrorAnswer({"type", "message"}): Celery records it as FAILURE (so
    Flower counts it failed, its reason in the result, never a text), and the API reads the error back and
    maps it through the shared taxonomy; no other exception text crosses Redis. `options` go to Celery's
    `app.task` (interactive default: result stored, acknowledged on start).
    """
    options = {"ignore_result": False, "acks_late": False, "throws": (ErrorAnswer,), **options}

    def decorate(body: Callable[[dict], dict]) -> Any:
        def run(payload: dict) -> dict:
            try:
                return {"ok": body(payload)}
            except RerankError as exc:
                raise ErrorAnswer(exc.to_dict()) from None
            except Exception:
                log.exception("task %s failed", name)
                raise ErrorAnswer(RerankError(ErrorType.INTERNAL, "the worker failed to score the request").to_dict()) from None

        run.__name__ = body.__name__
        run.__doc__ = body.__doc__
        return app.task(name=name, **options)(run)

    return decorate


def score_distinct(batcher: MicroBatcher, pairs: Sequence[EncodedPair], **options: Any) -> Future:
    """Submit one request's pairs with identical ones scored once; the future gives a score per pair.

    Identical inputs (the same passage twice, or passages that END truncation cut to the same tokens) then
    get identical logits, which rows of one batched forward pass do not promise in their last bits, and
    cost one pass. `options` go to `MicroBatcher.submit`.
    """
    first: dict[tuple[bytes, bytes], int] = {}
    twin = [first.setdefault(pair.key, len(first)) for pair in pairs]
    if len(first) == len(pairs):
        return batcher.submit(pairs, **options)
    distinct: list[EncodedPair] = [None] * len(first)  # type: ignore[list-item]
    for pair, slot in zip(pairs, twin):
        distinct[slot] = pair
    expanded: Future = Future()

    def expand(scored: Future) -> None:
        if scored.exception() is not None:
            expanded.set_exception(scored.exception())
        else:
            scores = scored.result()
            expanded.set_result([scores[slot] for slot in twin])

    batcher.submit(distinct, **options).add_done_callback(expand)
    return expanded


@signals.task_received.connect(weak=False)
def claim_on_receipt(request, **_) -> None:
    """Record this worker as the owner of a ranking task the moment its message is received, before it waits
    for a thread: if this process dies holding it, the API sees the owner's heartbeat stop and sends it again
    (api/ranking/task_watch.py). Runs in the consumer's thread; a Redis error only costs that early notice."""
    if request.name != RANK_TASK:
        return
    try:
        ttl = int(get_settings().request_timeout) + TASK_KEY_TTL_SLACK
        app.backend.client.set(task_worker_key(request.id), request.hostname or "", ex=ttl)
    except Exception as exc:  # noqa: BLE001 - never let it stop the consumer
        log.warning("could not record the owner of task %s: %s", request.id, exc)


def _claim(task: RankTask) -> None:
    """Record that this worker scores the current task; refuse it if its client left or its deadline passed.

    The API watches the recorded worker's heartbeat, to send the task again if this process dies.
    """
    request = current_task.request
    ttl = int(max((task.deadline or time.time()) - time.time(), 0)) + TASK_KEY_TTL_SLACK
    with app.backend.client.pipeline() as pipe:
        pipe.set(task_worker_key(request.id), request.hostname or "", ex=ttl)
        pipe.exists(task_cancelled_key(request.id))
        _, cancelled = pipe.execute()
    if cancelled:
        raise RerankError(ErrorType.TIMEOUT, "the client gave up before the request was scored")
    if task.deadline is not None and task.deadline < time.time():
        raise RerankError(ErrorType.TIMEOUT, "the request's deadline passed before it was scored")


@fleet_task(RANK_TASK)
def rank(payload: dict) -> dict:
    """Score every (query, passage) pair of one ranking request."""
    task = RankTask.model_validate(payload)
    state = current_state()
    if task.model_id != state.model_id:
        raise RerankError(ErrorType.NOT_FOUND, f"this worker serves {state.model_id!r}, not {task.model_id!r}")
    _claim(task)
    pairs = state.encoder.encode(task.query, task.passages, task.truncate, task.max_passage_tokens)
    try:
        logits = score_distinct(state.batcher, pairs, deadline=task.deadline).result()
    except DeadlineExceeded:
        raise RerankError(ErrorType.TIMEOUT, "the request's deadline passed before it was scored") from None
    return RankResult(logits=logits, token_counts=[pair.length for pair in pairs]).model_dump()
