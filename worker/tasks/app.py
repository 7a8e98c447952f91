"""The worker's Celery app and what its tasks share: the one task decorator, the tokenizer and the engine.

Task bodies run on Celery's thread pool in the worker's Celery process: they decode the task, tokenize
(worker/text), hand the pairs to the engine process (worker/engine/client.py) and encode the result. None of
that runs in the engine's interpreter, whose one thread only batches and runs forward passes.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from celery import Celery

from shared.celery_app import create_celery_app
from shared.errors import ErrorAnswer, ErrorType, RerankError
from shared.settings import get_settings
from worker.engine.client import EngineClient
from worker.text.distinct import distinct_pairs
from worker.text.prompting import PromptEncoder
from worker.text.tokenization import EncodedPairs, PairTokenizer, check_deadline
from worker.text.windows import best_of_windows

log = logging.getLogger(__name__)

app: Celery = create_celery_app(get_settings())


@dataclass
class WorkerState:
    """What the tasks of this process share: the model's id, its tokenizer, and the engine that scores."""

    model_id: str
    tokenizer: PairTokenizer | PromptEncoder  # the model's recipe's: encode(query, passages, ...) -> EncodedPairs
    engine: EngineClient


_state: WorkerState | None = None


def current_state() -> WorkerState:
    """This process's tokenizer and engine; UNAVAILABLE until the entrypoint has installed them."""
    if _state is None:
        raise RerankError(ErrorType.UNAVAILABLE, "the worker has not finished loading its model", retry_after=1)
    return _state


def install_state(state: WorkerState) -> None:
    """Called once by the worker entrypoint after the engine has loaded the model, before tasks are consumed."""
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
                error = RerankError(ErrorType.INTERNAL, "the worker failed to score the request")
                raise ErrorAnswer(error.to_dict()) from None

        run.__name__ = body.__name__
        run.__doc__ = body.__doc__
        return app.task(name=name, **options)(run)

    return decorate


def score_distinct(engine: EngineClient, pairs: EncodedPairs, **options: Any) -> Future:
    """Send one request's pairs with identical ones scored once; a future of one logit per pair.

    Identical inputs (the same passage twice, or passages that END truncation cut to the same tokens) then
    get identical logits, which rows of one batched forward pass do not promise in their last bits, and
    cost one pass. `options` go to `EngineClient.score`.
    """
    rows, groups = distinct_pairs(pairs)
    if len(rows) == len(pairs):
        return engine.score(pairs, **options)
    expanded: Future = Future()
    scored = engine.score(pairs.take(rows), **options)

    def expand(done: Future) -> None:
        if done.cancelled() or expanded.done():
            return
        if done.exception() is not None:
            expanded.set_exception(done.exception())
        else:
            expanded.set_result(done.result()[groups])

    expanded.add_done_callback(lambda done: done.cancelled() and scored.cancel())
    scored.add_done_callback(expand)
    return expanded


def submit_request(
    state: WorkerState,
    query: str,
    passages: list[str],
    truncate: str,
    *,
    max_passage_tokens: int | None = None,
    instruction: str | None = None,
    max_chunks: int = 1,
    **options: Any,
) -> "PendingScores":
    """Tokenize one request (long passages as up to `max_chunks` windows) and send it to the engine; its
    scores on their way. Tokenizing stops with TIMEOUT once `options`' deadline has passed. `options` go to
    `EngineClient.score`.
    """
    settings = get_settings()
    deadline = options.get("deadline")
    pairs, windows = state.tokenizer.encode_windows(
        query, passages, truncate, max_passage_tokens, instruction,
        max_windows=max_chunks, overlap=settings.chunk_overlap_tokens, max_total=settings.max_windows_per_request,
        deadline=deadline,
    )  # fmt: skip
    check_deadline(deadline)  # tokenizing took the time that was left: the engine would only drop it
    return PendingScores(score_distinct(state.engine, pairs, **options), pairs.lengths, windows)


class PendingScores:
    """One request's scores on their way: call it (with an optional timeout) for per passage its logit (its best
    window's) and its token count (all its windows' pairs together); `cancel` drops its unscored pairs."""

    def __init__(self, future: Future, lengths: np.ndarray, windows) -> None:
        self._future, self._lengths, self._windows = future, lengths, windows

    def __call__(self, timeout: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        logits = self._future.result(timeout)
        if self._windows is None:
            return logits, self._lengths
        return best_of_windows(logits, self._lengths, self._windows)

    def cancel(self) -> None:
        self._future.cancel()
