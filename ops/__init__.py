"""Operations tooling: model builders for tests and benchmarks, benchmarks, drills, container files."""
