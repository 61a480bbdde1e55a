"""Throughput benchmarks against their baselines; run as modules from the checkout (``python -m
benchmarks.encode --dataset DIR``, ``make bench``). Their shared preamble is ``benchmarks.common``."""
