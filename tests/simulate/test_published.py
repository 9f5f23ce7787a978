"""Published GPU profiles: every figure has a source or a stated assumption, and every
result drawn from them is labelled "published, not measured"."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from scalezero.errors import UserError
from scalezero.simulate.profile import POWER_STATES, PlatformProfile
from scalezero.simulate.published import (
    LABEL,
    PUBLISHED_PROFILES_FILE,
    profile_label,
    published_profiles,
    read_published,
)

PARKING_TAX = "2605.23918"
#: (bare idle, context idle) W, as the paper gives them.
IDLE_W = {"h100": (71.8, 121.7), "a100": (53.7, 80.0), "l40s": (35.6, 102.1)}


def test_every_figure_has_a_source_or_an_assumption() -> None:
    platforms = read_published()
    assert set(platforms) >= {"h100", "a100", "l40s", "l4"}
    for platform in platforms.values():
        assert platform.figures, platform.name
        for figure in platform.figures:
            assert figure.basis in ("published", "assumed"), figure
            if figure.basis == "published":
                assert figure.source.strip(), figure
            else:
                assert figure.note.strip(), figure
            assert math.isfinite(figure.value), figure
            # Each figure and its provenance are in the profile's notes.
            assert figure.text() in platform.profile.notes, figure


def test_profiles_carry_their_sources_and_the_label() -> None:
    for profile in published_profiles():
        assert profile.basis == "assumed"  # every one mixes in assumptions
        assert profile.energy_source == "published"
        assert LABEL in profile.notes
        assert any(PARKING_TAX in s for s in profile.sources) or profile.name == "l4"
        assert set(profile.power_w) == set(POWER_STATES)
        assert profile_label(profile) == f"{profile.name} ({LABEL})"
        # A JSON round trip keeps everything.
        assert PlatformProfile.from_record(profile.record()) == profile


def test_idle_figures_are_the_papers() -> None:
    platforms = read_published()
    for name, (bare, context) in IDLE_W.items():
        figures = {f.name: f for f in platforms[name].figures}
        for state, value in (("bare_idle", bare), ("context_idle", context)):
            figure = figures[f"power_w.{state}"]
            assert figure.value == value and figure.basis == "published", figure
            assert PARKING_TAX in figure.source
        # Active power under this small model has no source: an assumption.
        assert figures["power_w.active"].basis == "assumed"
        assert platforms[name].profile.power_w["bare_idle"] == bare


def test_l4_tdp_is_a_ceiling_not_a_measurement() -> None:
    l4 = read_published()["l4"]
    tdp = {f.name: f for f in l4.figures}["tdp_w"]
    assert tdp.value == 72 and tdp.basis == "published"
    assert "not a measurement" in tdp.note and "datasheet" in tdp.source
    assert l4.profile.power_w["active"] <= tdp.value
    # No published idle figure for the L4: its idle powers are assumptions.
    figures = {f.name: f for f in l4.figures}
    assert figures["power_w.bare_idle"].basis == "assumed"


def test_load_phase_is_bytes_over_an_assumed_bandwidth() -> None:
    platform = read_published()["h100"]
    figures = {f.name: f for f in platform.figures}
    assert figures["model_bytes"].value == 98_362_432
    assert figures["storage_read_mib_s"].basis == "assumed"
    expected = 98_362_432 / (figures["storage_read_mib_s"].value * 1024 * 1024)
    assert platform.profile.runtime_ready_to_model_loaded_s == pytest.approx(expected)
    load = figures["runtime_ready_to_model_loaded_s"]
    assert load.basis == "assumed" and "model_bytes / storage_read_mib_s" in load.note


def _edited(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(PUBLISHED_PROFILES_FILE.read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_an_assumption_without_a_reason_is_refused(tmp_path: Path) -> None:
    def drop_note(data: dict) -> None:
        del data["platforms"]["h100"]["power_w"]["active"]["note"]

    with pytest.raises(UserError, match="assumed and needs a note"):
        read_published(_edited(tmp_path, drop_note))


def test_a_published_figure_without_a_source_is_refused(tmp_path: Path) -> None:
    def drop_source(data: dict) -> None:
        del data["platforms"]["a100"]["power_w"]["bare_idle"]["source"]

    with pytest.raises(UserError, match="published but names no source"):
        read_published(_edited(tmp_path, drop_source))


def test_unknown_names_are_refused() -> None:
    with pytest.raises(UserError, match="unknown published profile"):
        published_profiles(["h200"])
