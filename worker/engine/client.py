"""The Celery process's side of its engine: start the engine process, send it requests, hand back their logits,
and start it again when it dies.

Task threads call `EngineClient.score`, which sends one frame and returns a future; one reader thread turns
the engine's frames into results. The engine is started with `python -m worker.engine` (never forked from
this process, which imports no torch and so never initialises CUDA) and given one end of a socketpair: no
path on disk, no shared memory, nothing to clean up when either side dies. If the engine dies (a crash,
CUDA running out of memory, SIGKILL; or a frame from it cannot be read, which closes the socket and kills
it), every request it held fails at once with UNAVAILABLE (503 with Retry-After at the API), `on_down` runs
(the worker stops announcing itself and consuming), and a new engine is started after 1 s, then 2, 4, ... up
to 30 s while it keeps dying; `on_up` runs once it has loaded.
"""

from __future__ import annotations

import itertools
import logging
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, InvalidStateError
from typing import Callable

import numpy as np

from shared.errors import ErrorType, RerankError
from worker.engine import protocol
from worker.engine.protocol import Kind, ScoreRequest, Status
from worker.metrics import TaskMetrics
from worker.model_source import ModelLoadError
from worker.text.tokenization import EncodedPairs

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
BACKOFF_FIRST, BACKOFF_MAX, STABLE_SECONDS = 1.0, 30.0, 60.0


class DeadlineExceeded(Exception):
    """A request's deadline passed before all its pairs were scored: the rest were dropped unscored."""


def engine_stopped() -> RerankError:
    return RerankError(ErrorType.UNAVAILABLE, "the worker's model engine stopped before answering; retry shortly",
                       retry_after=RETRY_AFTER_SECONDS)  # fmt: skip


class _Connection:
    """One engine process, its socket, and the requests it holds."""

    def __init__(self, process: subprocess.Popen, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.pending: dict[int, Future] = {}
        self.send_lock = threading.Lock()
        self.ready = threading.Event()
        self.info: dict = {}
        self.fatal: str | None = None
        self.lost = threading.Event()
        self.stats_reply: Future | None = None


class EngineClient:
    """Starts and feeds this worker's engine process."""

    def __init__(
        self,
        *,
        metrics: TaskMetrics | None = None,
        on_up: Callable[[dict], None] = lambda info: None,
        on_down: Callable[[], None] = lambda: None,
        argv: list[str] | None = None,
    ) -> None:
        self._metrics = metrics or TaskMetrics()
        self._on_up, self._on_down = on_up, on_down
        self._argv = argv or [sys.executable, "-m", "worker.engine"]
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._connection: _Connection | None = None
        self._closing = threading.Event()
        self._supervisor: threading.Thread | None = None

    # --- life --------------------------------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> dict:
        """Start the engine and wait until its model is loaded: what it said of itself (device, token limit,
        tokenizer). ModelLoadError, with the engine's own message, if it cannot load its model."""
        connection = self._spawn()
        info = self._wait_ready(connection, timeout)
        self._supervisor = threading.Thread(target=self._supervise, name="engine-supervisor", daemon=True)
        self._supervisor.start()
        return info

    @property
    def ready(self) -> bool:
        connection = self._connection
        return connection is not None and connection.ready.is_set() and not connection.lost.is_set()

    @property
    def pid(self) -> int | None:
        connection = self._connection
        return connection.process.pid if connection is not None else None

    def close(self, timeout: float = 10.0) -> None:
        """Stop the engine (it finishes its current pass) and do not start another."""
        self._closing.set()
        connection = self._connection
        if connection is None:
            return
        try:
            connection.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            connection.process.wait(timeout)
        except subprocess.TimeoutExpired:
            connection.process.kill()
            connection.process.wait()
        connection.sock.close()

    def _spawn(self) -> _Connection:
        mine, theirs = socket.socketpair()
        process = subprocess.Popen([*self._argv, "--fd", str(theirs.fileno())], pass_fds=[theirs.fileno()])
        theirs.close()
        connection = _Connection(process, mine)
        with self._lock:
            self._connection = connection
        threading.Thread(target=self._read, args=(connection,), name="engine-reader", daemon=True).start()
        return connection

    def _wait_ready(self, connection: _Connection, timeout: float | None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not connection.ready.wait(0.1):
            if connection.lost.is_set():
                code = connection.process.wait()
                if connection.fatal:
                    raise ModelLoadError(connection.fatal)
                raise ModelLoadError(f"the model engine exited with code {code} while loading the model")
            if deadline is not None and time.monotonic() > deadline:
                raise ModelLoadError(f"the model engine did not load its model within {timeout:g}s")
        return connection.info

    def _supervise(self) -> None:
        """Wait for the engine to stop; then fail nothing more (the reader did), report down, start a new one."""
        quick_deaths = 0
        while not self._closing.is_set():
            connection = self._connection
            started = time.monotonic()
            connection.lost.wait()
            code = connection.process.wait()
            connection.sock.close()
            if self._closing.is_set():
                return
            log.error("the model engine (pid %d) stopped with code %s; starting a new one", connection.process.pid, code)
            self._on_down()
            quick_deaths = 0 if time.monotonic() - started >= STABLE_SECONDS else quick_deaths
            while not self._closing.is_set():
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**quick_deaths)
                quick_deaths += 1
                if self._closing.wait(delay):
                    return
                self._metrics.engine_restarts.inc()
                try:
                    info = self._wait_ready(self._spawn(), None)
                except ModelLoadError as exc:
                    log.error("the new model engine could not start: %s", exc)
                    continue
                log.info("a new model engine (pid %s) has loaded its model", info.get("pid"))
                self._on_up(info)
                break

    # --- requests ----------------------------------------------------------------------------------------

    def score(self, pairs: EncodedPairs, *, background: bool = False, deadline: float | None = None) -> Future:
        """Send one request's pairs; the future gives their logits (float32, in order), or fails with
        DeadlineExceeded, or RerankError (UNAVAILABLE while the engine is down, INTERNAL if its pass failed).
        Cancelling the future drops the pairs the engine has not scored yet."""
        future: Future = Future()
        if not len(pairs):
            future.set_result(np.zeros(0, dtype=np.float32))
            return future
        with self._lock:
            connection = self._connection
            if connection is None or not connection.ready.is_set() or connection.lost.is_set():
                raise RerankError(ErrorType.UNAVAILABLE, "the worker's model engine is starting; retry shortly",
                                  retry_after=RETRY_AFTER_SECONDS)  # fmt: skip
            request_id = next(self._ids)
            connection.pending[request_id] = future
        frame = protocol.encode_score(ScoreRequest(request_id, pairs, background, deadline))
        try:
            with connection.send_lock:
                connection.sock.sendall(frame)
        except OSError:
            connection.pending.pop(request_id, None)
            _settle(future, exception=engine_stopped())
        future.add_done_callback(lambda done: done.cancelled() and self._cancel(connection, request_id))
        return future

    def _cancel(self, connection: _Connection, request_id: int) -> None:
        """A future cancelled by its caller: the engine drops the request's pairs it has not scored yet."""
        with self._lock:
            connection.pending.pop(request_id, None)
        try:
            with connection.send_lock:
                connection.sock.sendall(protocol.encode_cancel([request_id]))
        except OSError:
            pass  # the engine is gone, and the request with it

    def stats(self, timeout: float = 2.0) -> dict | None:
        """The engine's batch statistics and metric families; None while it is down or slow to answer."""
        connection = self._connection
        if not self.ready:
            return None
        with self._stats_lock:
            reply: Future = Future()
            connection.stats_reply = reply
            try:
                with connection.send_lock:
                    connection.sock.sendall(protocol.frame(Kind.STATS))
                return reply.result(timeout)
            except Exception:
                return None
            finally:
                connection.stats_reply = None

    def _read(self, connection: _Connection) -> None:
        reader = protocol.FrameReader()
        try:
            while True:
                data = connection.sock.recv(1 << 20)
                if not data:
                    break
                for kind, payload in reader.feed(data):
                    self._handle(connection, kind, payload)
        except Exception as exc:  # noqa: BLE001 - a broken socket or a frame that makes no sense: stop this engine
            if not self._closing.is_set():
                log.error("the model engine's stream broke (%s: %s); stopping it", type(exc).__name__, exc)
                _stop(connection)
        finally:
            connection.lost.set()
            with self._lock:
                pending, connection.pending = connection.pending, {}
            for future in pending.values():
                _settle(future, exception=engine_stopped())

    def _handle(self, connection: _Connection, kind: Kind, payload: memoryview) -> None:
        if kind is Kind.RESULT:
            result = protocol.decode_result(payload)
            with self._lock:
                future = connection.pending.pop(result.request_id, None)
            if future is None:
                return
            if result.status is Status.OK:
                _settle(future, result=result.logits)
            elif result.status is Status.EXPIRED:
                _settle(future, exception=DeadlineExceeded())
            else:
                log.error("the engine failed to score a request: %s", result.message)
                _settle(future, exception=RerankError(ErrorType.INTERNAL, "the worker failed to score the request"))
        elif kind is Kind.STATS:
            reply = connection.stats_reply
            if reply is not None and not reply.done():
                reply.set_result(protocol.decode_json(payload))
        elif kind is Kind.READY:
            connection.info = protocol.decode_json(payload)
            connection.ready.set()
        elif kind is Kind.FATAL:
            connection.fatal = protocol.decode_json(payload).get("message", "the model could not be loaded")


def _settle(future: Future, *, result=None, exception: BaseException | None = None) -> None:
    """Give a future its outcome unless it has one already (its caller may cancel it at any moment)."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


def _stop(connection: _Connection) -> None:
    """Close the socket of an engine whose stream cannot be read any more and kill it: the supervisor then
    starts a new one, as after a crash."""
    try:
        connection.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    connection.process.kill()
