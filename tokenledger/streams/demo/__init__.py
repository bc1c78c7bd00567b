"""The demo: a simulated day of labeled synthetic traffic through the whole pipeline, and
the worker's partition logic run offline on the same traffic (for benchmarks)."""
