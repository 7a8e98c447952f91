"""Batch jobs: submission (`service`) and their state in Redis (`store`). Transport-free: no fastapi, starlette or
grpc."""
