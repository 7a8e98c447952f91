"""The front door: HTTP (`api.http`) and gRPC (`api.grpc`) adapters over one transport-free core (`api.ranking`,
`api.jobs`), composed by `api.app.create_app`; `api.cli` is the `rerank-fleet` command."""
