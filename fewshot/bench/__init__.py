"""Benchmarks: the few-shot protocol as a runner, its methods and its reports."""

from fewshot.bench.methods import METHODS, Method, MethodResult, Task, register_method
from fewshot.bench.report import aggregate, plot, write_summary
from fewshot.bench.runner import load_results, parse_int_list, primary_metric, run_bench

__all__ = [
    "METHODS",
    "Method",
    "MethodResult",
    "Task",
    "aggregate",
    "load_results",
    "parse_int_list",
    "plot",
    "primary_metric",
    "register_method",
    "run_bench",
    "write_summary",
]
