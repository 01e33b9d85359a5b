"""Benchmarks of this package: every figure in README.md and results/*.md comes from a record.

Each `python -m benchmarks.bench_<name>` appends records to results/<name>.jsonl; `python -m
benchmarks report` renders the pages from them (docs/benchmarks.md)."""
