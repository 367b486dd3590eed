"""What the results mean: findings (verdicts per comparison), figures and the report.

`analysis.findings(results_folder)` is the table a reader acts on; see analysis.compare.
"""

from analysis.compare import findings
from analysis.load import load_results

__all__ = ["findings", "load_results"]
