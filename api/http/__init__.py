"""HTTP: one thin router per dialect (NIM ranking and retrieval, Cohere/Jina, jobs, health/models/metrics), the
taxonomy mapped to HTTP statuses once (`errors`), and the ASGI middleware. Never imports `api.grpc` or `api.cli`."""
