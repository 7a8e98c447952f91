"""gRPC: the KServe V2 / Triton server and servicer, its tensor protocol, and the taxonomy mapped to gRPC codes
once (`errors`). Never imports `api.http` or `api.cli`."""
