"""The rendered report: built from fixture runs, complete, self-contained, no leftovers."""

from __future__ import annotations

import base64
import os
import re
import stat
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from simulated_runs import STRATEGIES, WORKLOAD, make_results

from scalezero.cli import main
from scalezero.errors import UserError
from scalezero.report.build import SECTIONS, check_html
from scalezero.report.cli import make_report
from scalezero.report.figure_list import figure_numbers
from scalezero.report.format import fmt, fmt_ci, fmt_int, fmt_pct
from scalezero.report.render import (
    choose_renderer,
    resolve_document,
    resolve_shortcodes,
    split_front_matter,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _render(root: Path, results: dict, *, config: dict | None = None, renderer: str = "pandoc",
            out_name: str = "report.html") -> tuple[Path, dict]:
    html = make_report(
        workload=WORKLOAD, config=config or {}, summary_dir=root / "summary",
        run_dirs=results["run_dirs"], trace=results["trace"],
        projections_dir=root / "projections", figures_dir=root / "figures" / WORKLOAD,
        out_html=root / "report" / out_name, variables_out=root / "report" / "variables.yml",
        renderer=renderer)
    variables = yaml.safe_load((root / "report" / "variables.yml").read_text())
    return html, variables


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("report")
    results = make_results(root, gpu=False)
    html, variables = _render(root, results)
    return {"root": root, "results": results, "html": html,
            "text": html.read_text(encoding="utf-8"), "variables": variables}


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in
            re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', html)]


def _headings(html: str) -> list[str]:
    found = re.findall(r"<h1[^>]*>(.*?)</h1>", html, flags=re.DOTALL)
    return [re.sub(r"<[^>]+>", "", h).strip() for h in found]


def test_every_figure_embedded_and_non_empty(rendered: dict) -> None:
    images = _images(rendered["text"])
    assert len(images) == len(figure_numbers(list(STRATEGIES))) == 5 + len(STRATEGIES)
    for data in images:
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    # Self-contained: nothing is loaded from elsewhere.
    assert not re.search(r'<img[^>]+src="(?!data:)', rendered["text"])
    assert not re.search(r'<link[^>]+href="(?!data:)[^"]*\.css', rendered["text"])


def test_no_placeholder_or_include_left(rendered: dict) -> None:
    text = rendered["text"]
    assert "{{<" not in text and "{{%" not in text and ">}}" not in text
    assert "include" not in re.sub(r"<[^>]+>", "", text).lower().replace("included", "")
    check_html(text, len(figure_numbers(list(STRATEGIES))))


def test_every_section_present(rendered: dict) -> None:
    headings = " | ".join(_headings(rendered["text"]))
    for section in SECTIONS:
        assert section in headings, section
    # The bibliography was processed: entries cited in the text are listed.
    assert 'id="refs"' in rendered["text"]
    assert "Serverless in the Wild" in rendered["text"]
    assert "@shahrad2020" not in rendered["text"]


def test_every_strategy_appears(rendered: dict) -> None:
    text = rendered["text"]
    for strategy in STRATEGIES:
        assert text.count(strategy) >= 5, strategy
    assert set(rendered["variables"]["s"]) == set(STRATEGIES)


def test_renderer_is_named(rendered: dict) -> None:
    assert "pandoc" in rendered["variables"]["report"]["renderer"]
    assert "Rendered with pandoc" in re.sub(r"\s+", " ", rendered["text"])


def test_estimates_are_labelled(rendered: dict) -> None:
    text = rendered["text"]
    assert "<strong>estimates</strong>" in text
    assert "not measured" in text


def test_numbers_follow_the_constants(rendered: dict, tmp_path: Path) -> None:
    """A new carbon intensity reaches the prose and tables of the report."""
    root = rendered["root"]
    config = {"constants": {"carbon_intensity_g_per_kwh": {
        "value": 123, "unit": "gCO2e/kWh", "source": "test grid", "date": "2026"}}}
    html, variables = _render(root, rendered["results"], config=config, out_name="b.html")
    assert variables["const"]["carbon_intensity_g_per_kwh"]["value"] == "123"
    # Emissions scale with the intensity: 123/475 of the default's, within the three
    # significant digits shown; energy does not change.
    for strategy in STRATEGIES:
        before = rendered["variables"]["proj"][strategy]["r10"]
        after = variables["proj"][strategy]["r10"]
        assert float(after["kg_co2e_year"].replace(",", "")) == pytest.approx(
            float(before["kg_co2e_year"].replace(",", "")) * 123 / 475, rel=0.01)
        assert after["kwh_year"] == before["kwh_year"]
    text = re.sub(r"\s+", " ", html.read_text(encoding="utf-8"))
    assert "123 gCO2e/kWh" in text and "test grid" in text


def test_cli_renders(rendered: dict, tmp_path: Path) -> None:
    root = rendered["root"]
    out = tmp_path / "cli.html"
    code = main(["report", "--workload", WORKLOAD, "--results", str(root), "--out", str(out),
                 "--renderer", "pandoc"])
    assert code == 0 and out.stat().st_size > 100_000
    assert main(["report", "--workload", "nope", "--results", str(root)]) == 2


def test_quarto_when_on_path(rendered: dict, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With `quarto` on PATH the report is rendered (and labelled) by it. The stand-in
    checks the command line Quarto gets and renders with pandoc."""
    from scalezero.report.render import pandoc_path

    fake = tmp_path / "bin" / "quarto"
    fake.parent.mkdir()
    fake.write_text(f"""#!{sys.executable}
import subprocess, sys
args = sys.argv[1:]
if args == ["--version"]:
    print("1.6.40"); sys.exit(0)
assert args[0] == "render" and args[2:4] == ["--to", "html"] and args[4] == "--output", args
text = open(args[1]).read()
assert "{{{{<" not in text and "embed-resources: true" in text
sys.exit(subprocess.call([{pandoc_path()!r}, args[1], "--standalone", "--embed-resources",
                          "--citeproc", "-o", args[5]]))
""")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert choose_renderer("auto").name == "quarto"
    html, variables = _render(rendered["root"], rendered["results"], renderer="auto",
                              out_name="quarto.html")
    assert variables["report"]["renderer"] == "Quarto 1.6.40"
    assert "Rendered with Quarto 1.6.40" in re.sub(r"\s+", " ", html.read_text("utf-8"))


# ----------------------------------------------------------------------- shortcodes


def test_shortcodes(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "_part.md").write_text("---\ntitle: ignored\n---\nA {{< var a.b >}} "
                                               "{{< include _leaf.md >}}")
    (tmp_path / "sub" / "_leaf.md").write_text("leaf {{< meta title >}}")
    main_file = tmp_path / "doc.qmd"
    main_file.write_text('---\ntitle: "T {{< var a.b >}}"\n---\n'
                         "{{< include sub/_part.md >}}\n{{< var n >}}\n")
    meta, body = resolve_document(main_file, {"a": {"b": "x|y"}, "n": 3})
    assert meta["title"] == "T x|y"
    assert body.strip() == "A x|y leaf T x|y\n3".strip()
    with pytest.raises(UserError, match="not defined: missing"):
        resolve_shortcodes("{{< var missing >}}", tmp_path, {}, {})
    with pytest.raises(UserError, match="names a section"):
        resolve_shortcodes("{{< var a >}}", tmp_path, {"a": {"b": 1}}, {})
    with pytest.raises(UserError, match="include not found"):
        resolve_shortcodes("{{< include nope.md >}}", tmp_path, {}, {})
    with pytest.raises(UserError, match="unsupported shortcode"):
        resolve_shortcodes("{{< video x.mp4 >}}", tmp_path, {}, {})
    with pytest.raises(UserError, match="unresolved shortcode"):
        resolve_shortcodes("{{% raw %}}", tmp_path, {}, {})
    assert split_front_matter("no front matter") == ({}, "no front matter")


def test_report_source_uses_only_known_shortcodes() -> None:
    source = Path(__file__).resolve().parents[2] / "report"
    for path in source.rglob("*.*md"):
        for kind in re.findall(r"\{\{<\s*([a-z-]+)", path.read_text(encoding="utf-8")):
            assert kind in ("include", "var", "meta"), (path, kind)


def test_formatting() -> None:
    assert fmt(1234.5) == "1,234" or fmt(1234.5) == "1,235"
    assert fmt(0.012345) == "0.0123" and fmt(24.0) == "24" and fmt(1.5) == "1.5"
    assert fmt(float("nan")) == "n/a" and fmt(None) == "n/a" and fmt(0) == "0"
    assert fmt_pct(0.25) == "25 %" and fmt_pct(1e-9) == "< 0.01 %"
    assert fmt_int(1234.6) == "1,235" and fmt_int("7") == "7"
    # Scientific notation only from 1e15 up and below 1e-6, with `digits` digits.
    assert fmt(1.23456e16) == "1.23e+16" and fmt(1e15) == "1.00e+15"
    assert fmt(9.99e14) == "999,000,000,000,000" and fmt(1e-6) == "0.000001"
    assert fmt(9.5e-7) == "9.50e-07" and fmt(2.5e-7, 2) == "2.5e-07"
    assert fmt(1234.5678, 6, thousands=False) == "1234.57"
    assert fmt_pct(1e-4) == "0.01 %" and fmt_pct(0) == "0 %" and fmt_pct(0.123456) == "12.3 %"
    assert fmt_ci([1.2344], digits=4) == "1.234" and fmt_ci([0.5], scale=100.0) == "50"
    assert fmt_int(float("nan")) == "n/a" and fmt_int(None) == "n/a" and fmt_int("x") == "n/a"
    assert fmt_ci([1.0]) == "1" and fmt_ci([2.0, 2.0]) == "2"
    # Mean ± t(0.975, n-1) x sd / sqrt(n), t from the table: 12.706 (1 df), 4.303 (2 df).
    # [1, 3]: sd sqrt(2), half-width 12.706 x 1 = 12.7; [1, 2, 3]: 4.303 / sqrt(3) = 2.48.
    assert fmt_ci([1.0, 3.0]) == "2 ± 13"
    assert fmt_ci([1.0, 2.0, 3.0]) == "2 ± 2.5"
    # Scaled before the interval; whole numbers are shown whole: 12.7062 x 1000.
    assert fmt_ci([10.0, 30.0], scale=100.0) == "2,000 ± 12,706"


def test_three_repeats_give_confidence_intervals_in_summary_and_report(
        tmp_path: Path) -> None:
    results = make_results(tmp_path, gpu=True, reps=3)
    import pandas as pd

    ci = pd.read_csv(tmp_path / "summary" / f"{WORKLOAD}_ci.csv")
    ttft = ci[ci["metric"] == "ttft_p50_ms"].set_index("strategy")
    assert (ttft["n"] == 3).all()
    assert (ttft["ci95_low"] <= ttft["mean"]).all() and (ttft["mean"] <= ttft["ci95_high"]).all()
    html, _ = _render(tmp_path, results)
    text = html.read_text(encoding="utf-8")
    summary = text.split('id="sec-summary"', 1)[1].split('id="sec-setup"', 1)[0]
    # Mean ± half-width of the 95 % interval, in the summary table.
    assert len(re.findall(r"\d ± \d", summary)) >= 3, summary[:2000]
    # Latencies identical in every repeat show no interval. By hand from the fixture:
    # always_on answers at once (120 ms); a cold request waits the 1.5 s start (1,620 ms);
    # keep_warm's second request of a burst queues behind the first (720 ms), its third
    # does not (120 ms), so its warm median is 420 ms.
    cells = re.sub(r"<[^>]+>", "|", summary)
    cells = [c.strip() for c in re.split(r"\|+", cells) if c.strip()]

    def row(label: str) -> list[str]:
        i = cells.index(label)
        return cells[i + 1:i + 4]

    first = cells.index("always_on")  # the header: strategies in the report's order
    assert cells[first:first + 3] == ["always_on", "keep_warm", "naive"]
    assert row("TTFT p50, warm requests (ms)") == ["120", "420", "720"]
    assert row("TTFT p50, cold requests (ms)") == ["n/a", "1,620", "1,620"]


def test_frontier_figure_and_text_name_the_strategies_no_other_beats(rendered: dict) -> None:
    summary = pd.read_csv(rendered["results"]["summary"]["summary"])
    idle = summary.groupby("strategy")["phase_idle_loaded_s"].mean()
    cold = summary.groupby("strategy")["cold_share"].mean()
    # The simulation's three policies trade idle time for cold starts: none beats another
    # on both, so all three are on the frontier, in the report's order.
    assert idle["always_on"] > idle["keep_warm"] > idle["naive"]
    assert cold["always_on"] < cold["keep_warm"] < cold["naive"]
    frontier = rendered["variables"]["frontier"]
    assert frontier["names"] == "always_on, keep_warm, naive"
    assert frontier["dominated"] == "none"
    assert frontier["basis"].startswith("idle instance time")
    text = re.sub(r"\s+", " ", rendered["text"])
    assert "only ones worth choosing between for this traffic, are: always_on, keep_warm, naive." \
        in text
