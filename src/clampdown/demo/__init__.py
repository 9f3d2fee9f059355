"""A ready-made sandbox (`clampdown demo`) and the synthetic history it and the benchmarks use."""

from clampdown.demo.seed import Result, create

__all__ = ["Result", "create"]
