"""The transport-free core of the front door: `RankingService` and what it leans on (admission, result waiting,
task watch, worker registry, input limits, model names, metrics). Imports no fastapi, starlette or grpc."""
