"""ordergate benchmarks: `python -m bench` (`make bench`) prints every figure beside its floor.

Each module measures one figure and its floor in the same process, so the ratio holds on a noisy machine.
`BENCH_QUICK=1` shrinks every size; `BENCH_JSON=path` writes the figures as JSON.
"""
