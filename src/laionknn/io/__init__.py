"""Readers and writers for every official file; conventions are converted here and nowhere else."""

from laionknn.io.check import Layout, check_against_record, expected_layout
from laionknn.io.knnfiles import (ResultFile, read_gold, read_meta, read_result, result_shape, write_gold,
                                  write_result)
from laionknn.io.validate import result_file_problems
from laionknn.io.vectors import (VectorFile, VectorWriter, check_vectors, open_h5, parse_memory,
                                 read_vectors, write_vectors)

__all__ = ["Layout", "ResultFile", "VectorFile", "VectorWriter", "check_against_record", "check_vectors",
           "expected_layout", "open_h5", "parse_memory", "read_gold", "read_meta", "read_result", "read_vectors",
           "result_file_problems", "result_shape", "write_gold", "write_result", "write_vectors"]
