"""Load for the drills: synchronous requests from asyncio clients on loopback, and a batch job checked line by line."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
import httpx

from ops.bench.jobs import MODEL_ID, passage, percentile, vocabulary

WORDS = vocabulary()


def ranking_body(rng: random.Random, passages: int = 5, words: int = 30) -> dict:
    """A /v1/ranking body: `passages` passages of `words` words, truncate END."""
    return {"model": MODEL_ID, "query": {"text": " ".join(rng.choices(WORDS, k=8))},
            "passages": [passage(rng, WORDS, words) for _ in range(passages)], "truncate": "END"}  # fmt: skip


@dataclass
class Outcomes:
    """Status and latency of every answer (a client-side error counts under its exception name)."""

    answers: list[tuple[float, str, float]] = field(default_factory=list)  # (sent at, status, seconds)

    def add(self, sent_at: float, status: str, seconds: float) -> None:
        self.answers.append((sent_at, status, seconds))

    def counts(self) -> dict[str, int]:
        counted: dict[str, int] = {}
        for _, status, _ in self.answers:
            counted[status] = counted.get(status, 0) + 1
        return dict(sorted(counted.items()))

    def latency(self, status: str | None = None) -> dict[str, float]:
        values = [s for _, st, s in self.answers if status is None or st == status]
        if not values:
            return {}
        return {"p50_ms": 1000 * statistics.median(values), "p99_ms": 1000 * percentile(values, 0.99),
                "max_ms": 1000 * max(values)}  # fmt: skip


async def _one(client: httpx.AsyncClient, body: dict, outcomes: Outcomes) -> str:
    sent_at = time.monotonic()
    try:
        status = str((await client.post("/v1/ranking", json=body)).status_code)
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    outcomes.add(sent_at, status, time.monotonic() - sent_at)
    return status


async def closed_loop(
    url: str, *, concurrency: int, seconds: float, timeout: float = 120, seed: int = 1, pause_after_error: float = 0.2
) -> Outcomes:
    """`concurrency` clients, each sending its next request when the last is answered, for `seconds`.

    After an error a client pauses `pause_after_error` seconds, as a real one would, instead of spinning.
    """
    rng, outcomes = random.Random(seed), Outcomes()
    stop_at = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http:

        async def loop() -> None:
            while time.monotonic() < stop_at:
                if await _one(http, ranking_body(rng), outcomes) != "200":
                    await asyncio.sleep(pause_after_error)

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return outcomes


async def open_loop(url: str, *, rate: float, seconds: float, timeout: float = 30, seed: int = 2) -> Outcomes:
    """Requests started at `rate` per second for `seconds`, whether or not earlier ones were answered.

    aiohttp rather than httpx: at hundreds of requests per second on the same few cores as the fleet,
    the generator's own CPU time must stay small.
    """
    rng, outcomes = random.Random(seed), Outcomes()
    bodies = [json.dumps(ranking_body(rng)).encode() for _ in range(50)]
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as http:

        async def one(body: bytes) -> None:
            sent_at = time.monotonic()
            try:
                async with http.post("/v1/ranking", data=body, headers=headers) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status = type(exc).__name__
            outcomes.add(sent_at, status, time.monotonic() - sent_at)

        tasks, started = [], time.monotonic()
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(bodies[n % len(bodies)])))
        await asyncio.gather(*tasks)
    return outcomes


def job_requests(count: int, passages: int = 20, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    return [{"custom_id": f"r{i}", "query": {"text": " ".join(rng.choices(WORDS, k=8))},
             "passages": [passage(rng, WORDS, 30) for _ in range(passages)]} for i in range(count)]  # fmt: skip


def submit_job(url: str, requests: list[dict]) -> str:
    body = {"model": MODEL_ID, "truncate": "END", "requests": requests}
    response = httpx.post(f"{url}/v1/ranking/jobs", json=body, timeout=120)
    response.raise_for_status()
    return response.json()["id"]


def finish_job(url: str, job_id: str, expected: int, timeout: float = 900) -> dict:
    """Wait for the job, then check its results: one line per request, none missing, none twice, no errors."""
    deadline, status = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        try:
            status = httpx.get(f"{url}/v1/ranking/jobs/{job_id}", timeout=10).json()
        except (httpx.HTTPError, ValueError):
            time.sleep(1)
            continue
        if status.get("status") in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(1)
    lines = httpx.get(f"{url}/v1/ranking/jobs/{job_id}/results", timeout=120).text.splitlines()
    parsed = [json.loads(line) for line in lines if line.strip()]
    indexes = [line["index"] for line in parsed]
    return {
        "status": status.get("status"),
        "lines": len(parsed),
        "missing": len(set(range(expected)) - set(indexes)),
        "duplicated": len(indexes) - len(set(indexes)),
        "errors": sum("error" in line for line in parsed),
        "wrong_custom_id": sum(line.get("custom_id") != f"r{line['index']}" for line in parsed),
    }
