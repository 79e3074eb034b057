"""`make bench`: stage and end-to-end benchmarks; results rewrite docs/benchmarks.md."""
