"""hybrid_histogram: the adaptive keep-alive of "Serverless in the Wild" (Shahrad et al.,
USENIX ATC 2020, its "hybrid histogram policy").

The policy learns the deployment's idle times: the time from the end of the last request
(nothing in flight, nothing waiting: ``on_idle``) to the next arrival (``on_arrival``).
They go into a histogram of ``bin_width_s`` bins over ``[0, range_s)`` (paper: 1 minute
bins over 4 hours); longer idle times count as out of range.

The rule implemented, following the paper:

* **Representative** histogram: at least ``min_samples`` idle times, at most
  ``out_of_range_max_share`` of them out of range, and a coefficient of variation
  (population standard deviation over mean) of the in-range bin counts *above*
  ``cv_threshold``. A high CV means the idle times are concentrated in few bins, a
  predictable pattern; the paper uses 2 as the threshold. Then:

  - head edge = lower edge of the bin holding the ``head_percentile`` (5th) of the
    in-range idle times; tail edge = upper edge of the bin holding the
    ``tail_percentile`` (99th). A percentile p falls in the first bin whose cumulative
    count reaches ``ceil(p / 100 * n)`` (at least 1).
  - the margin (paper: 10 %) shrinks the pre-warm window and widens the keep-alive:
    ``prewarm_s = head_edge * (1 - margin)``, ``keep_until_s = tail_edge * (1 + margin)``,
    both measured from the start of the idle period. The keep-alive window is
    ``keep_until_s - prewarm_s``.
  - ``prewarm_s > 0``: unload when idle (TTL 0) and pre-warm at ``idle start + prewarm_s``;
    the pre-warmed instance then stays up until ``idle start + keep_until_s``.
  - ``prewarm_s == 0`` (the head is in the first bin): as in the paper, do not unload;
    keep the instance up until ``idle start + keep_until_s``.

* **Not representative** (too few samples, too many out of range, or a spread-out
  histogram): a fixed keep-alive of ``fallback_ttl_s`` and no pre-warm. The paper falls
  back to its standard keep-alive (the histogram range) for a spread-out histogram and
  to a time-series forecast (ARIMA) when most idle times are out of range; both become
  the fixed keep-alive here.

**Training period.** The paper's policy has learned from the traffic that preceded the
measured window; a run of a few dozen requests alone never fills a histogram.
``learn_history`` takes such arrivals (a workload's training part) before the run and
records each gap between consecutive ones as an idle time. Service time is neglected
there: a request's gap to the next arrival also holds its own service, so a gap is an
upper bound of the idle time that followed it. The gap from the last history arrival to
the replay start is not recorded (the replay start is no arrival).

``fallback_ttl_s`` defaults to 600 s rather than the paper's 4 h range: the paper's
baseline fixed keep-alive is 10 minutes, and a 4 h keep-alive would make every run
shorter than that an always-on run while the histogram is learning.

Pure: the pool passes the time into every call; no clock, no I/O.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

from scalezero.serving.strategies.base import Accounting, Policy
from scalezero.serving.strategies.registry import register


@register
@dataclasses.dataclass
class HybridHistogram(Policy):
    name = "hybrid_histogram"
    #: Width of one histogram bin, s (paper: 60).
    bin_width_s: float = dataclasses.field(default=60.0, metadata={"exclusiveMinimum": 0})
    #: Idle times at or beyond this are out of range, s (paper: 4 h).
    range_s: float = dataclasses.field(default=14400.0, metadata={"exclusiveMinimum": 0})
    #: Percentile whose bin's lower edge sets the pre-warm time (paper: 5).
    head_percentile: float = dataclasses.field(
        default=5.0, metadata={"minimum": 0, "maximum": 100})
    #: Percentile whose bin's upper edge sets the end of the keep-alive (paper: 99).
    tail_percentile: float = dataclasses.field(
        default=99.0, metadata={"minimum": 0, "maximum": 100})
    #: Margin, % : pre-warm this much earlier, keep alive this much longer (paper: 10).
    margin_pct: float = dataclasses.field(default=10.0, metadata={"minimum": 0, "maximum": 100})
    #: Idle times needed before the histogram can be representative.
    min_samples: int = dataclasses.field(default=10, metadata={"minimum": 1})
    #: The bin counts' coefficient of variation must exceed this (paper: 2).
    cv_threshold: float = dataclasses.field(default=2.0, metadata={"minimum": 0})
    #: Fixed keep-alive while the histogram is not representative, s.
    fallback_ttl_s: float = dataclasses.field(default=600.0, metadata={"minimum": 0})
    #: Largest share of idle times out of range for a representative histogram.
    out_of_range_max_share: float = dataclasses.field(
        default=0.5, metadata={"minimum": 0, "maximum": 1})

    def __post_init__(self) -> None:
        super().__post_init__()
        positive = {"bin_width_s": self.bin_width_s, "range_s": self.range_s}
        for field_name, value in positive.items():
            if not value > 0 or math.isinf(value):
                raise ValueError(f"{field_name} must be a finite number > 0")
        if self.range_s < self.bin_width_s:
            raise ValueError("range_s must be >= bin_width_s")
        for field_name in ("head_percentile", "tail_percentile", "margin_pct"):
            value = getattr(self, field_name)
            if not 0 <= value <= 100:
                raise ValueError(f"{field_name} must be between 0 and 100")
        if self.head_percentile >= self.tail_percentile:
            raise ValueError("head_percentile must be < tail_percentile")
        if self.min_samples < 1:
            raise ValueError("min_samples must be >= 1")
        if not self.cv_threshold >= 0:
            raise ValueError("cv_threshold must be >= 0")
        if not self.fallback_ttl_s >= 0:
            raise ValueError("fallback_ttl_s must be >= 0")
        if not 0 <= self.out_of_range_max_share <= 1:
            raise ValueError("out_of_range_max_share must be between 0 and 1")
        # Learned state: plain attributes, not fields, so params() lists parameters only.
        n_bins = math.ceil(self.range_s / self.bin_width_s)
        self._counts: list[int] = [0] * n_bins
        self._out_of_range = 0
        # Running statistics of the counts, so that a decision costs O(log bins), not
        # O(bins) (the simulator asks millions of times): their sum and sum of squares
        # (exact integers), a Fenwick tree of prefix sums for the percentile bins, and
        # the windows last computed, until the next idle time changes the counts.
        self._in_range = 0
        self._sum_sq = 0
        self._tree: list[int] = [0] * (n_bins + 1)
        self._top_step = 1 << (n_bins.bit_length() - 1)
        self._windows: tuple[float, float] | None = None
        self._windows_known = False
        #: Start of the current idle period; None while requests are in flight (or before
        #: the first one): then the fallback applies.
        self._idle_since_s: float | None = None

    # ------------------------------------------------------------ learning
    def on_idle(self, now_s: float) -> None:
        self._idle_since_s = now_s

    def on_arrival(self, now_s: float) -> None:
        if self._idle_since_s is None:
            return  # requests in flight: no idle period ended
        self.record_idle_s(max(0.0, now_s - self._idle_since_s))
        self._idle_since_s = None

    def learn_history(self, arrival_times_s: Sequence[float]) -> None:
        """Record the gap between each two consecutive history arrivals as an idle time
        (an upper bound: their service time is neglected; see the module docstring)."""
        times_s = sorted(float(t) for t in arrival_times_s)
        for earlier_s, later_s in itertools.pairwise(times_s):
            self.record_idle_s(later_s - earlier_s)

    def record_idle_s(self, idle_s: float) -> None:
        """Add one idle time to the histogram."""
        self._windows_known = False
        if idle_s >= self.range_s:
            self._out_of_range += 1
        else:
            index = min(int(idle_s // self.bin_width_s), len(self._counts) - 1)
            count = self._counts[index]
            self._counts[index] = count + 1
            self._in_range += 1
            self._sum_sq += 2 * count + 1  # (c + 1)^2 - c^2
            tree = self._tree
            size = len(tree)
            position = index + 1
            while position < size:
                tree[position] += 1
                position += position & -position

    # ------------------------------------------------------------ the histogram
    @property
    def samples(self) -> int:
        return self._in_range + self._out_of_range

    def bin_cv(self) -> float:
        """Coefficient of variation of the in-range bin counts (0 when all are empty)."""
        n_bins = len(self._counts)
        mean = sum(self._counts) / n_bins
        if mean == 0:
            return 0.0
        variance = sum((c - mean) ** 2 for c in self._counts) / n_bins
        return math.sqrt(variance) / mean

    def _cv_above_threshold(self) -> bool:
        """``bin_cv() > cv_threshold`` in O(1) from the running sums:
        CV = sqrt(n * sum(c^2) - sum(c)^2) / sum(c) for n bins. Within rounding of the
        threshold, ``bin_cv`` itself decides, so that decisions stay the same as its."""
        total = self._in_range
        if total == 0:
            return False  # a CV of 0 never exceeds a threshold >= 0
        cv = math.sqrt(len(self._counts) * self._sum_sq - total * total) / total
        if abs(cv - self.cv_threshold) > 1e-9 * max(1.0, self.cv_threshold):
            return cv > self.cv_threshold
        return self.bin_cv() > self.cv_threshold

    def representative(self) -> bool:
        """Whether the histogram predicts idle times (the rule in the module docstring)."""
        total = self.samples
        if total < self.min_samples or self._in_range == 0:
            return False
        if self._out_of_range / total > self.out_of_range_max_share:
            return False
        return self._cv_above_threshold()

    def _percentile_bin(self, percentile: float) -> int:
        """The first bin whose cumulative count reaches the percentile's rank (a descent
        of the Fenwick tree); the last bin when none does."""
        remaining = max(1, math.ceil(percentile / 100 * self._in_range))
        tree = self._tree
        size = len(tree)
        position = 0
        step = self._top_step
        while step:
            following = position + step
            if following < size:
                count = tree[following]
                if count < remaining:
                    position = following
                    remaining -= count
            step >>= 1
        return min(position, len(self._counts) - 1)

    def windows_s(self) -> tuple[float, float] | None:
        """(pre-warm, keep-until), s after the start of an idle period, margins applied;
        None when the histogram is not representative."""
        if self._windows_known:
            return self._windows
        windows = None
        if self.representative():
            margin = self.margin_pct / 100
            head_edge_s = self._percentile_bin(self.head_percentile) * self.bin_width_s
            tail_edge_s = (self._percentile_bin(self.tail_percentile) + 1) * self.bin_width_s
            windows = head_edge_s * (1 - margin), tail_edge_s * (1 + margin)
        self._windows = windows
        self._windows_known = True
        return windows

    # ------------------------------------------------------------ decisions
    def idle_ttl_s(self, now_s: float) -> float | None:
        windows = self.windows_s()
        if windows is None or self._idle_since_s is None:
            return self.fallback_ttl_s
        prewarm_s, keep_until_s = windows
        if now_s < self._idle_since_s + prewarm_s:
            return 0.0  # unload; prewarm_at_s brings an instance back
        return max(0.0, self._idle_since_s + keep_until_s - now_s)

    def prewarm_at_s(self, now_s: float) -> float | None:
        windows = self.windows_s()
        if windows is None or self._idle_since_s is None:
            return None
        at_s = self._idle_since_s + windows[0]
        return at_s if now_s < at_s else None

    def accounting(self) -> Accounting:
        # The analysis takes one TTL per policy; the learned windows change with the
        # workload, so it is the fallback keep-alive's.
        return Accounting(always_on=self.min_instances >= 1, idle_ttl_s=self.fallback_ttl_s)
