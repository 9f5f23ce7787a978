"""Self-checks of the simulated runs that the projection, figure and report tests use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from simulated_runs import POWER_W, arrivals, make_results, simulate


def test_simulation_cold_starts() -> None:
    _, reqs, _ = simulate("keep_warm", arrivals(1))
    assert [r["cold"] for r in reqs] == [True, False, False] * 3
    instances, reqs, _ = simulate("always_on", arrivals(1))
    assert len(instances) == 1 and not any(r["cold"] for r in reqs)


def test_make_results(tmp_path: Path) -> None:
    out = make_results(tmp_path, gpu=True, reps=1)
    summary = pd.read_csv(out["summary"]["summary"]).set_index("strategy")
    assert summary.at["keep_warm", "cold_starts"] == 3
    assert summary.at["always_on", "cold_starts"] == 0
    assert summary.at["keep_warm", "bare_idle_power_w"] == np.float64(POWER_W["bare"])
