"""The report: projections, figures and the rendered HTML of one workload's runs.

`scalezero.report.config` holds the config keys the report owns (constants with their
sources, the traffic sweep, report settings); `inputs` reads the pipeline's files,
`variables` turns them into the numbers the prose cites and `tables` into the generated
tables (with `facts` about the setup and `format` for display); `render` resolves the
Quarto shortcodes and renders with Quarto or pandoc; `build` puts it together. The
figures live in `scalezero.report.figures`, the projections in
`scalezero.analysis.projections`.
"""
