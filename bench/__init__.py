"""Embridge performance benchmarks (``make bench`` / ``python -m bench.run_all``).

Every target is a ratio against a floor measured in the same run (raw numpy/torch/faiss doing the
same arithmetic), so a result holds on a noisy or shared machine; absolute goals (µs per query,
seconds to a window) are reported next to their floor. Each area writes ``bench/results/<area>.json``
and ``docs/performance.md`` is generated from those files.
"""
