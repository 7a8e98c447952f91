"""The worker's Celery glue: the app and its one task decorator, the task bodies (ranking requests, batch-job
chunks), the heartbeat, the job sweeper, Celery signal hooks."""
