"""Seeded workload generators: the request traces that every strategy replays.

Kinds: poisson, gamma (burstiness), bursty (on/off with idle gaps), trace_csv (replay a
recorded CSV), azure_functions (the Azure Functions 2019 per-minute invocation
counts) and azure_llm (an Azure LLM inference trace: window, thinning, token mapping).
The same config entry and seed give the same trace file, byte for byte.
"""

from scalezero.workload.cli import add_cli
from scalezero.workload.spec import KINDS, WORKLOAD_SCHEMA, validate_spec
from scalezero.workload.trace import (
    HISTORY_COLUMNS,
    TRACE_COLUMNS,
    generate_trace,
    history_summary,
    read_history,
    read_trace,
    trace_record,
    trace_summary,
    write_history,
    write_trace,
)

__all__ = [
    "HISTORY_COLUMNS",
    "KINDS",
    "TRACE_COLUMNS",
    "WORKLOAD_SCHEMA",
    "add_cli",
    "generate_trace",
    "history_summary",
    "read_history",
    "read_trace",
    "trace_record",
    "trace_summary",
    "validate_spec",
    "write_history",
    "write_trace",
]
