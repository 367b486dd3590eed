"""What the results mean: findings (verdicts per comparison), figures and the report.

`analysis.findings(results_folder)` is the table a reader acts on (analysis.compare), and
`analysis.load_results(folder)` the results it reads (analysis.load). Both load on first use,
so that a light module of the package (analysis.outcomes, which a study file's `outcomes`
are checked against) imports neither the statistics libraries nor the findings code.
"""

__all__ = ["findings", "load_results"]


def __getattr__(name: str):
    if name == "findings":
        from analysis.compare import findings

        return findings
    if name == "load_results":
        from analysis.load import load_results

        return load_results
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
