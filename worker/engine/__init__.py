"""The engine: one process per device that owns the model (`process`), fed over a socketpair (`protocol`) by the
worker's Celery process (`client`), with the micro-batcher (`scheduler`) between the two."""
