"""The `rerank-fleet` command: `up` (launcher, supervision, embedded Redis, Flower start-up) and `jobs`. Nothing
outside `api.cli` imports it."""
