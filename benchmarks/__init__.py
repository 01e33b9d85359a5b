"""Benchmarks of this package: every figure in README.md and results/*.md comes from a record.

Run a benchmark as `python -m benchmarks.bench_<name> ...` (each module's docstring has the
command); it appends JSON-lines records to benchmarks/results/<name>.jsonl. Then
`python -m benchmarks report` renders benchmarks/results/*.md and README.md's headline block from
those records alone. docs/benchmarks.md says how to run and read them.
"""
