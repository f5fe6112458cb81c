"""``hardneg report``: results.jsonl -> the paper's tables and figures, with variance and significance.

Outputs (all byte-stable for the same input): ``table.md``/``table.csv`` (every grid cell: mean and sd over
seeds, paired randomisation test against the baseline, naive top-k unless ``--baseline`` says otherwise),
``best.md`` (best setting per method chosen on dev, reported on test, like the paper's Table 3), ``teachers.md``
(when several teachers or ensembles ran the same filter: each against the reference teacher, like the paper's
Tables 1-2), ``sampling.md`` (when the grid samples: each sampled strategy against the same filter's plain
top-n, the paper's Fig. 2 as a table), ``mining.md`` (per-filter statistics), ``cost.md`` (wall time by stage),
and figures ``fig1_sweeps.png``, ``fig4_scores.png``, and ``fig2_sampled.png`` when the grid has sampled
strategies (test nDCG@10 against k, with the same filter's plain top-n as a reference line).
"""
from __future__ import annotations

from hardneg.report.common import (cell, fmt_cell, mean_sd, paired_over_seeds, q50_text, read_results, savefig,
                                   sig_mark, sig_text)
from hardneg.report.figures import plot_scores, plot_sweeps
from hardneg.report.methods import (METHOD_NAMES, method_of, sampling_pairs, sampling_references, sort_key,
                                    unsampled)
from hardneg.report.tables import (COLUMNS, base_metrics, best_markdown, cost_markdown, mining_markdown,
                                   sampling_markdown, summarise, table_csv, table_markdown, teachers_markdown,
                                   write_report)

__all__ = ["COLUMNS", "METHOD_NAMES", "base_metrics", "best_markdown", "cell", "cost_markdown", "fmt_cell",
           "mean_sd", "method_of", "mining_markdown", "paired_over_seeds", "plot_scores", "plot_sweeps", "q50_text",
           "read_results", "sampling_markdown", "sampling_pairs", "sampling_references", "savefig", "sig_mark",
           "sig_text", "sort_key", "summarise", "table_csv", "table_markdown", "teachers_markdown", "unsampled",
           "write_report"]
