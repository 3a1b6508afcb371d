"""Several finetune runs side by side: one row per run with its headline test figures after training.

What it is for: ``cellst compare RUN_A RUN_B ...`` and the notebooks' loss comparison. It reads each run's
``metrics.json`` through :func:`cellst.report.load_run`; it computes nothing new.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .report import load_run

COMPARED = [("pair", "non-specific", m) for m in ("accuracy@1", "accuracy@5", "recall@5", "recall@10", "mrr@10",
                                                  "median_rank")] + \
           [("caption", "non-specific", m) for m in ("accuracy@1", "accuracy@5", "recall@5", "recall@10", "mrr@10")] + \
           [(rule, "specific", m) for rule in ("pair", "caption") for m in ("accuracy@1", "recall@5")]
SHORT = {"accuracy": "acc", "recall": "R", "mrr": "MRR", "median_rank": "MedR"}


def compare_runs(run_dirs, direction: str = "text_to_image") -> pd.DataFrame:
    """One row per run (name, loss, model) with its headline test figures after training.

    Columns are ``<rule> [spec ]<figure>``: ``pair acc@1`` is text->image accuracy@1 under the pair rule over the
    whole split; ``spec pair R@5`` is the query-weighted specific recall@5 over descriptors. A figure a run lacks is NaN.
    """
    rows = []
    for run_dir in run_dirs:
        metrics = load_run(run_dir).metrics
        row = {"run": Path(run_dir).name, "loss": metrics.get("loss"), "model": metrics.get("model")}
        after = {(r["direction"], r["rule"], r["scope"]): r["metrics"] for r in metrics.get("after", [])}
        for rule, scope, metric in COMPARED:
            row[_column(rule, scope, metric)] = after.get((direction, rule, scope), {}).get(metric, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _column(rule: str, scope: str, metric: str) -> str:
    name, _, k = metric.partition("@")
    short = SHORT.get(name, name) + (f"@{k}" if k and name != "mrr" else "")
    return ("spec " if scope == "specific" else "") + f"{rule} {short}"


def format_comparison(table: pd.DataFrame) -> str:
    """The comparison as fixed-width text, four decimals, as the report shows figures."""
    return table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-")
