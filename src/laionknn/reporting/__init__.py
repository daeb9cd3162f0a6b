"""Reports from evaluation CSVs: operating points, Pareto frontiers, recall-vs-QPS plots, HTML page.

``write_report(csv_paths, out_dir)`` writes everything and returns a dict of the paths written.
"""

from laionknn.reporting.report import write_report
from laionknn.reporting.tables import (OperatingPoint, load_eval_csv, markdown_report, operating_points,
                                       pareto_frontier, thresholds_for)

__all__ = ["OperatingPoint", "load_eval_csv", "markdown_report", "operating_points", "pareto_frontier",
           "thresholds_for", "write_report"]
