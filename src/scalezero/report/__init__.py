"""The report: projections, figures and the rendered HTML of one workload's runs.

`scalezero.report.config` holds the config keys the report owns (constants with their
sources, the traffic sweep, report settings); `variables` turns the summaries into the
numbers the prose cites; `render` resolves the Quarto shortcodes and renders with Quarto
or pandoc; `build` puts it together. The figures live in `scalezero.report.figures`, the
projections in `scalezero.analysis.projections`.
"""
