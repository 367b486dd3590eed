"""Parameter importances for studies that cannot be tested over seeds (Optuna searches,
one-seed grids): Optuna's fANOVA evaluator, fed the runs from the Parquet results.

Importances say which parameters the objective moved with in this search; they are not
tests, and the best configurations still need re-evaluation over seeds.
"""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd

LOG_SCALE = {"lr", "weight_decay"}


def _python(value):
    return value.item() if isinstance(value, np.generic) else value


def _distribution(values: pd.Series, categorical: bool, name: str):
    present = [_python(v) for v in values.dropna().unique()]
    if len(present) < 2:
        return None
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if categorical or not numeric:
        return optuna.distributions.CategoricalDistribution(sorted(present, key=lambda v: (str(type(v)), v)))
    low, high = float(min(present)), float(max(present))
    return optuna.distributions.FloatDistribution(low, high, log=name in LOG_SCALE and low > 0)


def parameter_importances(runs: pd.DataFrame, params: list[str], metric: str, maximize: bool,
                          categorical: set[str] = frozenset(), seed: int = 0) -> pd.DataFrame:
    """fANOVA importance of each parameter for `metric` (normalised to sum to 1), highest first.
    `categorical` names parameters to treat as levels (a grid's axes) rather than a range."""
    runs = runs.dropna(subset=[metric])
    distributions = {p: d for p in params if (d := _distribution(runs[p], p in categorical, p)) is not None}
    if not distributions or len(runs) < 3:
        return pd.DataFrame(columns=["parameter", "importance"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    for _, row in runs.iterrows():
        study.add_trial(optuna.trial.create_trial(
            params={p: _python(row[p]) for p in distributions}, distributions=distributions,
            value=float(row[metric])))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    importances = optuna.importance.get_param_importances(study, evaluator=evaluator, params=list(distributions))
    return pd.DataFrame({"parameter": list(importances), "importance": list(importances.values())})
