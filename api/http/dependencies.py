"""FastAPI dependencies that hand routes the app's services (built in api/app.py's lifespan).

`async`, as every dependency here: FastAPI runs a plain `def` on its thread pool, one thread hop per request.
"""

from __future__ import annotations

from fastapi import Request

from api.jobs.service import JobService
from api.jobs.store import JobStore
from api.ranking.fleet_metrics import FleetReader
from api.ranking.service import RankingService


async def ranking_service(request: Request) -> RankingService:
    return request.app.state.ranking_service


async def job_service(request: Request) -> JobService:
    return request.app.state.job_service


async def job_store(request: Request) -> JobStore:
    return request.app.state.job_store


async def fleet_reader(request: Request) -> FleetReader:
    return request.app.state.fleet_reader
