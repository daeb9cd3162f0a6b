"""Scoring k-NN answers: the official id-only recall, a tie-aware recall, and scoring of result files.

``recall(ids, gold, k)`` is the organisers' Σ_i |ids_i[:k] ∩ gold_i[:k]| / (n·k);
``recall_tie_aware(ids, gold, k)`` also counts ids as near as the k-th gold neighbour;
``evaluate(paths, gold, k=None)`` scores every result file under ``paths`` into rows of
:data:`EVAL_COLUMNS` (``write_eval_csv`` writes them).
"""

from laionknn.evaluation.evaluate import (EVAL_COLUMNS, OFFICIAL_COLUMNS, evaluate, find_result_files,
                                          write_eval_csv)
from laionknn.evaluation.gold import GoldSource, locate_gold, year_from_name
from laionknn.evaluation.recall import (RECALL_RULES, TIE_TOL, macrorecall_sum, recall, recall_by_rule, recall_hits,
                                       recall_tie_aware)

__all__ = ["EVAL_COLUMNS", "GoldSource", "OFFICIAL_COLUMNS", "TIE_TOL", "evaluate", "find_result_files",
           "locate_gold", "macrorecall_sum", "recall", "recall_by_rule", "recall_hits", "recall_tie_aware",
           "RECALL_RULES", "write_eval_csv", "year_from_name"]
