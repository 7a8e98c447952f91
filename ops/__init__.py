"""Operations tooling: benchmarks (`bench/`), drills (`drills/`), container files (`docker/`), the model builder
(`models/`), docs pictures (`docs/`), and `processes`, which starts real fleet processes for tests and drills."""
