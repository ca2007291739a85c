"""benchmarks stage of the suite."""
