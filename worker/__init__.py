"""Rerank Fleet workers: Celery tasks, the micro-batcher and the cross-encoder runtime."""
