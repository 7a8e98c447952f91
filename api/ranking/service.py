"""The ranking service: check a request, enqueue it for a worker of its model, wait for the scores.

Routes of every transport and dialect translate their bodies into a call of `RankingService.score`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid

from celery import Celery
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from api.ranking.admission import Admission
from api.ranking.input_limits import check_max_chunks, check_request
from api.ranking.metrics import note_model
from api.ranking.model_names import match_served_model
from api.ranking.result_waiter import ResultWaiter
from api.ranking.task_watch import TaskWatch, task_id as new_task_id
from api.ranking.worker_registry import WorkerRegistry
from shared.celery_app import RANK_TASK, interactive_queue
from shared.errors import ErrorType, RerankError, instruction_refused, shown
from shared.schemas import RankResult, RankTask, Truncate
from shared.settings import Settings

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MIN_RETRY_SECONDS = 1.0  # a task whose worker died is sent again only with at least this much time left
MAX_SENDS = 3  # a request is sent at most this often (workers may die again while a fleet restarts them)
CLAIM_GRACE_SECONDS = 2.0  # a task unclaimed this long after its send is checked for having vanished


class _WorkerLost(Exception):
    """The worker that took a task stopped sending heartbeats before answering."""


class RankingService:
    """Sends ranking work to the workers through Redis and returns their results."""

    def __init__(
        self,
        settings: Settings,
        celery: Celery,
        waiter: ResultWaiter,
        registry: WorkerRegistry,
        *,
        admission: Admission,
        watch: TaskWatch,
    ) -> None:
        self._settings = settings
        self._celery = celery
        self._waiter = waiter
        self._registry = registry
        self._admission = admission
        self._watch = watch

    async def score(
        self,
        *,
        model: str,
        query: str,
        passages: list[str],
        truncate: Truncate,
        request_id: str | None = None,
        timeout: float | None = None,
        max_passage_tokens: int | None = None,
        instruction: str | None = None,
        max_chunks_per_passage: int | None = None,
        chunks_field: str = "max_chunks_per_passage",
    ) -> RankResult:
        """Logits and token counts for every passage, in input order.

        `timeout` (a client's deadline) can shorten the wait, never lengthen it past RERANK_REQUEST_TIMEOUT.
        `max_passage_tokens` cuts every passage to that many tokens before truncation (Cohere dialect);
        `instruction` fills the model's prompt (refused before queueing for a model whose workers announce a
        prompt that takes none);
        `max_chunks_per_passage` lets a long passage be scored as that many windows (API.md section 6), refused
        past RERANK_MAX_CHUNKS_PER_PASSAGE naming the client's `chunks_field`.
        """
        timeout = min(timeout, self._settings.request_timeout) if timeout else self._settings.request_timeout
        check_request(self._settings, query, passages, instruction)
        check_max_chunks(self._settings, max_chunks_per_passage, chunks_field)
        deadline = time.time() + timeout
        task = RankTask(
            request_id=request_id or uuid.uuid4().hex,
            model_id=model,
            query=query,
            passages=passages,
            truncate=truncate,
            max_passage_tokens=max_passage_tokens,
            instruction=instruction,
            max_chunks_per_passage=max_chunks_per_passage or 1,
            deadline=deadline,
        )
        try:
            await self._require_worker(model)
            if instruction is not None and not await self._registry.takes_instruction(model):
                raise instruction_refused()
            note_model(model)
            async with self._admission.slot(model, uuid.uuid4().hex, deadline):
                meta = await self._run(task)
        except (RedisError, OSError, OperationalError) as exc:
            log.warning("broker unavailable: %s", exc)
            raise RerankError(
                ErrorType.UNAVAILABLE, "the message broker (Redis) is unreachable", retry_after=RETRY_AFTER_SECONDS
            ) from None
        if meta is None:
            raise RerankError(ErrorType.TIMEOUT, f"no worker answered within {timeout:g} seconds")
        return _unpack(meta)

    async def _run(self, task: RankTask) -> dict | None:
        """Send the task and wait for its result record (None at the deadline).

        If the worker that took it dies (or it vanished with a worker killed as it popped it), the task is
        sent again while enough time is left and a live worker remains, else UNAVAILABLE; if the caller is
        cancelled (its client left) or the deadline passes, workers are told to skip the task. Only the
        answer to the last send is awaited, so a request scored twice reaches its client once.
        """
        sends = 0
        while True:
            task_id, sends = new_task_id(), sends + 1
            try:
                async with self._waiter.expect(task_id) as pending:
                    await asyncio.to_thread(self._send, task_id, task)
                    meta = await pending.get(task.deadline - time.time(), functools.partial(self._check, task_id, task))
                if meta is None:  # its deadline passed: a worker that has it still should not score it
                    await self._watch.cancel(task_id, 0)
                return meta
            except _WorkerLost as lost:
                left = task.deadline - time.time()
                if sends == MAX_SENDS or left < MIN_RETRY_SECONDS or not await self._registry.live_workers(task.model_id):
                    raise RerankError(
                        ErrorType.UNAVAILABLE,
                        "the worker scoring this request stopped before answering",
                        retry_after=RETRY_AFTER_SECONDS,
                    ) from None
                log.warning("%s task %s; sending it again (%.1fs left)", lost, task_id, left)
            except (asyncio.CancelledError, RerankError):  # its client left, or no worker is left to take it
                await self._watch.cancel(task_id, task.deadline - time.time())
                raise

    async def _check(self, task_id: str, task: RankTask) -> None:
        lost = await self._watch.lost_worker(task_id, task.model_id)
        if lost is not None:
            raise _WorkerLost(f"worker {lost} died scoring")
        if time.time() - int(task_id[:16], 16) / 1e9 < CLAIM_GRACE_SECONDS or await self._watch.owner(task_id):
            return
        if await self._watch.vanished(task_id, interactive_queue(task.model_id)):
            raise _WorkerLost("a worker stopped between taking and claiming")
        if not await self._registry.live_workers(task.model_id):  # still queued, and nobody left to take it
            raise RerankError(ErrorType.UNAVAILABLE, f"no worker is serving model {task.model_id!r} right now",
                              retry_after=RETRY_AFTER_SECONDS)  # fmt: skip

    async def check_ready(self, model: str | None = None) -> dict[str, int]:
        """Live workers per model, of `model` or else of every configured model; UNAVAILABLE naming the first
        model that has none (or saying Redis is unreachable); NOT_FOUND for a `model` neither configured nor served."""
        workers = {}
        try:
            await self._registry.ping()
            for served in [model] if model else self._settings.model_ids:
                workers[served] = len(await self._registry.live_workers(served))
        except (RedisError, OSError):
            raise RerankError(ErrorType.UNAVAILABLE, "Redis is unreachable", retry_after=RETRY_AFTER_SECONDS) from None
        idle = [served for served, count in workers.items() if not count]
        if idle and idle[0] not in self._settings.model_ids:
            raise not_served(idle[0])
        if idle:
            raise RerankError(
                ErrorType.UNAVAILABLE, f"no worker is serving model {idle[0]!r}", retry_after=RETRY_AFTER_SECONDS
            )
        return workers

    async def served_models(self) -> list[str]:
        """The configured models in their order, the default one first (what a client that takes the first of
        /v1/models, as LangChain does, and one that names no model, as Cohere's may, both get), then every other
        model a live worker announces, sorted."""
        try:
            models = set(await self._registry.served_models())
        except (RedisError, OSError):
            raise RerankError(ErrorType.UNAVAILABLE, "Redis is unreachable", retry_after=RETRY_AFTER_SECONDS) from None
        configured = self._settings.model_ids
        return configured + sorted(models - set(configured))

    async def resolve_model(self, name: str | None) -> str:
        """The served id a client means by `name` (default: the first configured model).

        An exact id wins; else the one served id that matches once `_` and `.` are read alike (LiteLLM
        writes `llama-3_2-...` for `llama-3.2-...`). Anything else comes back unchanged, so that scoring
        reports it as an unknown model.
        """
        if not name:
            return self._settings.model_ids[0]
        if name in self._settings.model_ids:
            return name
        return match_served_model(name, await self.served_models()) or name

    async def _require_worker(self, model: str) -> None:
        if await self._registry.live_workers(model):
            return
        if model not in self._settings.model_ids:
            raise not_served(model)
        raise RerankError(
            ErrorType.UNAVAILABLE, f"no worker is serving model {model!r} right now", retry_after=RETRY_AFTER_SECONDS
        )

    def _send(self, task_id: str, task: RankTask) -> None:
        self._celery.send_task(
            RANK_TASK,
            args=[task.model_dump()],
            task_id=task_id,
            queue=interactive_queue(task.model_id),
            expires=max(task.deadline - time.time(), 0.001),  # a worker drops it once the client has given up
            # what Flower and worker logs show of the arguments: never the query or passages
            argsrepr=f"[model={task.model_id!r} passages={len(task.passages)} truncate={task.truncate}]",
            kwargsrepr="{}",
            retry=False,
        )


def not_served(model: str) -> RerankError:
    """The 404 for a model id that no configured model or live worker has."""
    return RerankError(ErrorType.NOT_FOUND, f"model {shown(model)} is not served here; GET /v1/models lists the models")


def _error_answer(result: object) -> dict | None:
    """The error a worker answered with (shared/errors.ErrorAnswer, as Celery stores a raised exception)."""
    if isinstance(result, dict) and result.get("exc_type") == "ErrorAnswer":
        args = result.get("exc_message")
        if isinstance(args, list) and args and isinstance(args[0], dict):
            return args[0]
    return None


def _unpack(meta: dict) -> RankResult:
    """A worker's Celery result record → its scores, or the error it reported."""
    if meta.get("status") == "REVOKED":  # Celery dropped it unstarted: its deadline (`expires`) had passed
        raise RerankError(ErrorType.TIMEOUT, "the request's deadline passed before a worker took it")
    result = meta.get("result")
    if meta.get("status") == "SUCCESS" and isinstance(result, dict) and "ok" in result:
        return RankResult.model_validate(result["ok"])
    error = _error_answer(result) if meta.get("status") == "FAILURE" else None
    if error is not None:
        raise RerankError.from_dict(error)
    log.error("task ended with status %s", meta.get("status"))
    raise RerankError(ErrorType.INTERNAL, "the worker failed to score the request")
