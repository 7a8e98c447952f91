"""ASGI middleware and request helpers of the HTTP app: auth, body limit, request id and access log, metrics,
client disconnects. `api.app` stacks them in one fixed order."""
