"""The verifier-vs-optimum gap studies: synthetic pairs (`gap`, with exact accepted lengths from `length_gap`) and
stored real next-token laws (`law_file`, `law_gap`). Computation and JSON only; their figures are drawn by
`specjax.bench.studies_plots`. Nothing is imported here."""
