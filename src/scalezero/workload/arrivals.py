"""Arrival-time generators. All return sorted int64 microsecond offsets from t=0.

Times are kept as whole microseconds so that window boundaries are exact (an arrival
never rounds onto the end of its window) and the CSV prints them without float noise.
Arrivals are truncated (floored) to the microsecond.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

US_PER_S = 1_000_000

GapSampler = Callable[[np.random.Generator, int], np.ndarray]


def to_us(seconds: float) -> int:
    """Seconds to whole microseconds (nearest), for configured times and durations."""
    return round(seconds * US_PER_S)


def floor_us(seconds: np.ndarray) -> np.ndarray:
    return np.floor(seconds * US_PER_S).astype(np.int64)


def renewal_s(
    rng: np.random.Generator, draw_gaps: GapSampler, mean_gap_s: float, horizon_s: float
) -> np.ndarray:
    """Arrival times of a renewal process started at 0 (first arrival after one gap),
    up to but excluding horizon_s.

    Gaps are drawn in chunks sized from the expected count (plus 6 sigma for a Poisson
    count), so one chunk almost always suffices; chunk sizes depend only on the
    configuration, which keeps the output a function of the seed.
    """
    expected = horizon_s / mean_gap_s
    chunk = int(expected + 6.0 * math.sqrt(expected) + 16)
    parts: list[np.ndarray] = []
    offset_s = 0.0
    while True:
        times = offset_s + np.cumsum(draw_gaps(rng, chunk))
        parts.append(times)
        if times[-1] >= horizon_s:
            break
        offset_s = float(times[-1])
    times = np.concatenate(parts)
    return times[times < horizon_s]


def _window_us(times_s: np.ndarray, length_us: int) -> np.ndarray:
    times_us = floor_us(times_s)
    return times_us[times_us < length_us]


def exponential_gaps(rate_rps: float) -> GapSampler:
    scale_s = 1.0 / rate_rps
    return lambda rng, size: rng.exponential(scale_s, size)


def poisson_us(rng: np.random.Generator, rate_rps: float, duration_s: float) -> np.ndarray:
    times_s = renewal_s(rng, exponential_gaps(rate_rps), 1.0 / rate_rps, duration_s)
    return _window_us(times_s, to_us(duration_s))


def gamma_us(
    rng: np.random.Generator, rate_rps: float, burstiness: float, duration_s: float
) -> np.ndarray:
    """Gamma renewal process: shape = burstiness, scale = 1/(rate*burstiness), so the mean
    gap is 1/rate and the squared coefficient of variation of gaps is 1/burstiness."""
    scale_s = 1.0 / (rate_rps * burstiness)

    def draw(gen: np.random.Generator, size: int) -> np.ndarray:
        return gen.gamma(burstiness, scale_s, size)

    times_s = renewal_s(rng, draw, 1.0 / rate_rps, duration_s)
    return _window_us(times_s, to_us(duration_s))


def burst_starts_us(
    bursts: int, burst_duration_s: float, idle_gap_s: float, first_burst_at_s: float
) -> np.ndarray:
    """Start of each burst window; window k is [start_k, start_k + burst_duration)."""
    period_us = to_us(burst_duration_s) + to_us(idle_gap_s)
    return to_us(first_burst_at_s) + period_us * np.arange(bursts, dtype=np.int64)


def bursty_us(
    rng: np.random.Generator,
    bursts: int,
    burst_duration_s: float,
    burst_rate_rps: float,
    idle_gap_s: float,
    first_burst_at_s: float,
) -> np.ndarray:
    """On/off traffic: Poisson arrivals inside each burst window, silence between.

    A burst whose Poisson draw is empty gets one request at its start, so the trace
    always has exactly `bursts` bursts.
    """
    parts: list[np.ndarray] = []
    for start_us in burst_starts_us(bursts, burst_duration_s, idle_gap_s, first_burst_at_s):
        offsets_us = poisson_us(rng, burst_rate_rps, burst_duration_s)
        if offsets_us.size == 0:
            offsets_us = np.zeros(1, dtype=np.int64)
        parts.append(start_us + offsets_us)
    return np.concatenate(parts)


def minute_bounds_us(minutes: int, time_compression: float) -> np.ndarray:
    """Replay-time boundaries of trace minutes: minute i is [b[i], b[i+1]).

    Each boundary is rounded on its own (not accumulated), so compression never drifts.
    """
    minute_s = 60.0 / time_compression
    return np.array([to_us(i * minute_s) for i in range(minutes + 1)], dtype=np.int64)


def poisson_counts(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Read each minute's count as its rate and draw a Poisson number of arrivals: a
    Poisson process with piecewise-constant rate, whose total matches the trace only in
    expectation."""
    return rng.poisson(np.asarray(counts, dtype=np.int64)).astype(np.int64)


def per_minute_us(
    rng: np.random.Generator, counts: np.ndarray, bounds_us: np.ndarray, even: bool
) -> np.ndarray:
    """Expand per-minute counts into arrival times, keeping every count exactly.

    even=False: each arrival uniform in its minute (seeded).
    even=True:  a minute's c arrivals at start + j*width/c, j = 0..c-1 (no randomness).
    """
    counts = np.asarray(counts, dtype=np.int64)
    minute_of = np.repeat(np.arange(counts.size), counts)
    starts_us = bounds_us[:-1][minute_of]
    widths_us = (bounds_us[1:] - bounds_us[:-1])[minute_of]
    if even:
        first_index = np.repeat(np.cumsum(counts) - counts, counts)
        j = np.arange(minute_of.size, dtype=np.int64) - first_index
        offsets_us = (j * widths_us) // counts[minute_of]
    else:
        offsets_us = np.floor(rng.random(minute_of.size) * widths_us).astype(np.int64)
        # floor(u * w) < w for u < 1, but guard against rounding at the top end.
        offsets_us = np.minimum(offsets_us, widths_us - 1)
    return np.sort(starts_us + offsets_us, kind="stable")
