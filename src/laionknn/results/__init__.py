"""Official result files (writer, validator) and run records (CSV / JSONL).

``write_result`` writes an official result file from 0-based ids (``knns`` 1-based on disk, ``dists``,
attributes ``algo, data, size, buildtime, querytime, params`` and ``task`` when given);
``check_result_file(path)`` lists every problem of a file written by anyone;
``append_run_records`` / ``read_run_records`` keep one record per run in a CSV or JSONL file.
"""

from laionknn.io import write_result
from laionknn.results.check import check_result_file
from laionknn.results.records import append_run_records, read_run_records, replace_run_records

__all__ = ["append_run_records", "check_result_file", "read_run_records", "replace_run_records", "write_result"]
