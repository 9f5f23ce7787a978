"""Platform profiles of GPUs this project cannot measure, from published figures.

The figures live in ``data/profiles/published.yaml``, each with its basis: ``published``
(with the source that prints it) or ``assumed`` (with the reason for the value, since no
source gives it). A profile built from them is ``published`` only when every figure is;
the GPU profiles here all mix in assumptions (decode speed, active power, start-up
phases), so they are ``assumed`` profiles. Their results are always shown with
`LABEL`: they are what the simulator says these platforms would do, not measurements.

The model load phase is a bandwidth bound: the model file's bytes over an assumed
storage read bandwidth (what the size sweep's read_bandwidth rule measures on the host
that runs the pipeline).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from scalezero.errors import UserError
from scalezero.simulate.profile import POWER_STATES, Basis, PlatformProfile

#: The data file shipped with the project.
PUBLISHED_PROFILES_FILE = Path(__file__).resolve().parents[3] / "data" / "profiles" / \
    "published.yaml"
#: How every result of a published profile is labelled (tables, figures, report text).
LABEL = "published, not measured"
MIB = 1024 * 1024

#: Figures (under `shared`, or a platform) that are PlatformProfile fields of the same name.
TIMING_FIELDS: tuple[str, ...] = (
    "spawn_to_runtime_ready_s", "model_loaded_to_ready_s", "first_request_extra_s",
    "stop_s", "ttft_base_s", "ttft_s_per_prompt_token", "tpot_s", "instance_concurrency",
)
#: Figures the load phase is derived from.
LOAD_FIELDS: tuple[str, ...] = ("model_bytes", "storage_read_mib_s")
#: Figures recorded for the record only (not profile fields).
EXTRA_FIELDS: tuple[str, ...] = ("tdp_w",)


@dataclasses.dataclass(frozen=True)
class Figure:
    """One number with where it comes from."""

    name: str
    value: float
    unit: str
    basis: Basis
    #: The citation (for a published figure; for an assumed one, what it is derived from).
    source: str = ""
    #: Why this value (required for an assumed figure; a caveat for a published one).
    note: str = ""

    def text(self) -> str:
        """One line for a profile's notes."""
        value = f"{self.value:,.0f}" if self.value.is_integer() and self.value >= 1e4 \
            else f"{self.value:g}"
        parts = [self.source, self.note] if self.basis == "published" \
            else [self.note, f"from {self.source}" if self.source else ""]
        why = "; ".join(p for p in parts if p)
        return f"{self.name} = {value} {self.unit} ({self.basis}: {why})"


@dataclasses.dataclass(frozen=True)
class PublishedPlatform:
    """A platform of the data file: its figures and the profile they make."""

    name: str
    device: str
    figures: tuple[Figure, ...]
    profile: PlatformProfile


def _figure(name: str, raw: Any, sources: Mapping[str, str], where: str) -> Figure:
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: {name} must be a mapping with value, unit and basis")
    unknown = set(raw) - {"value", "unit", "basis", "source", "note"}
    if unknown:
        raise UserError(f"{where}: {name} has unknown keys {sorted(unknown)}")
    basis = raw.get("basis")
    value = raw.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{where}: {name}.value must be a number")
    note = " ".join(str(raw.get("note") or "").split())
    keys = raw.get("source") or []
    keys = [keys] if isinstance(keys, str) else list(keys)
    unknown_keys = [k for k in keys if k not in sources]
    if unknown_keys:
        raise UserError(f"{where}: {name} names unknown sources {unknown_keys} (known: "
                        f"{', '.join(sources)})")
    source = " + ".join(sources[k] for k in keys)
    if basis == "published":
        if not source:
            raise UserError(f"{where}: {name} is published but names no source")
    elif basis == "assumed":
        if not note:
            raise UserError(f"{where}: {name} is assumed and needs a note saying why")
    else:
        raise UserError(f"{where}: {name}.basis must be published or assumed, not {basis!r}")
    return Figure(name, float(value), str(raw.get("unit", "")), basis, source, note)


def _load_figure(name: str, figures: Mapping[str, Figure]) -> Figure:
    """The load phase, derived: the model file's bytes over the storage read bandwidth."""
    load_bytes, bandwidth = figures["model_bytes"], figures["storage_read_mib_s"]
    if bandwidth.value <= 0:
        raise UserError(f"published profile {name}: storage_read_mib_s must be > 0")
    published = load_bytes.basis == bandwidth.basis == "published"
    return Figure("runtime_ready_to_model_loaded_s", load_bytes.value / (bandwidth.value * MIB),
                  "s", "published" if published else "assumed",
                  " + ".join(f.source for f in (load_bytes, bandwidth) if f.source),
                  "model_bytes / storage_read_mib_s: the time to read the file at that "
                  "bandwidth, a lower bound on the load")


def _profile(name: str, device: str, model: str, figures: Mapping[str, Figure]
             ) -> PlatformProfile:
    load = figures["runtime_ready_to_model_loaded_s"]
    everything = list(figures.values())
    basis: Basis = "published" if all(f.basis == "published" for f in everything) \
        else "assumed"
    timings: dict[str, Any] = {k: figures[k].value for k in TIMING_FIELDS if k in figures}
    if "instance_concurrency" in timings:
        timings["instance_concurrency"] = int(timings["instance_concurrency"])
    power = {k.removeprefix("power_w."): f.value for k, f in figures.items()
             if k.startswith("power_w.")}
    derived = ["runtime-warm wake: no published figure, taken as the cold start less its "
               "runtime phase (the model's load and readiness)"]
    if "runtime_warm" not in power and "context_idle" in power:
        # A sleeping instance holds only its runtime (CUDA context), as the context-only
        # figure does.
        power["runtime_warm"] = power["context_idle"]
        derived.append("runtime-warm power: no published figure, taken as context_idle")
    sources = tuple(dict.fromkeys(s for f in everything for s in f.source.split(" + ") if s))
    notes = "; ".join([f"{LABEL}: figures of {device} from published sources where one "
                       "exists, assumptions otherwise", *(f.text() for f in everything),
                       *derived])
    return PlatformProfile(
        name=name, model=model, device=device, basis=basis, sources=sources, notes=notes,
        runtime_ready_to_model_loaded_s=load.value, power_w=power,
        energy_source="published", **timings)


def read_published(path: Path | None = None) -> dict[str, PublishedPlatform]:
    """Every platform of the data file (default: the one shipped), by name."""
    path = Path(path or PUBLISHED_PROFILES_FILE)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no such published-profiles file {str(path)!r}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("platforms"), Mapping):
        raise UserError(f"{path}: expected sources, model, shared and platforms")
    sources = {str(k): " ".join(str(v).split()) for k, v in (data.get("sources") or {}).items()}
    model = str(data.get("model", ""))
    shared = data.get("shared") or {}
    out: dict[str, PublishedPlatform] = {}
    for name, entry in data["platforms"].items():
        where = f"{path}: platforms.{name}"
        if not isinstance(entry, Mapping) or "device" not in entry:
            raise UserError(f"{where}: needs a device")
        raw: dict[str, Any] = {**shared}
        raw.update({k: v for k, v in entry.items() if k not in ("device", "power_w")})
        for state, fig in (entry.get("power_w") or {}).items():
            if state not in POWER_STATES:
                raise UserError(f"{where}: unknown power state {state!r}")
            raw[f"power_w.{state}"] = fig
        known = {*TIMING_FIELDS, *LOAD_FIELDS, *EXTRA_FIELDS}
        unknown = {k for k in raw if not k.startswith("power_w.")} - known
        if unknown:
            raise UserError(f"{where}: unknown figures {sorted(unknown)}")
        missing = set(LOAD_FIELDS) - set(raw)
        if missing:
            raise UserError(f"{where}: missing {sorted(missing)}")
        figures = {k: _figure(k, v, sources, where) for k, v in raw.items()}
        figures["runtime_ready_to_model_loaded_s"] = _load_figure(str(name), figures)
        device = str(entry["device"])
        out[str(name)] = PublishedPlatform(str(name), device, tuple(figures.values()),
                                           _profile(str(name), device, model, figures))
    return out


def published_profiles(names: Sequence[str] | None = None, path: Path | None = None
                       ) -> list[PlatformProfile]:
    """The profiles of `names` (all when None), in that order."""
    platforms = read_published(path)
    chosen = list(platforms) if names is None else list(names)
    unknown = [n for n in chosen if n not in platforms]
    if unknown:
        raise UserError(f"unknown published profile(s) {', '.join(unknown)} (known: "
                        f"{', '.join(platforms)})")
    return [platforms[n].profile for n in chosen]


def is_published(profile: PlatformProfile) -> bool:
    """A profile from this module (not fitted from measured runs)."""
    return profile.basis != "measured"


def profile_label(profile: PlatformProfile) -> str:
    """How a result of `profile` is named: measured ones by name, others with LABEL."""
    return profile.name if not is_published(profile) else f"{profile.name} ({LABEL})"


__all__ = [
    "LABEL", "PUBLISHED_PROFILES_FILE", "Figure", "PublishedPlatform", "is_published",
    "profile_label", "published_profiles", "read_published",
]
