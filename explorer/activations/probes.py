"""Linear-probe separability of prompt sets per layer: cross-validated logistic-regression accuracy."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def probe_accuracy(states: dict[str, np.ndarray], folds: int = 5, seed: int = 0,
                   shuffle_labels: bool = False) -> pd.DataFrame:
    """Per layer, the mean accuracy of a logistic regression telling the sets apart (chance: 1 / number of sets)."""
    names = list(states)
    features = np.concatenate([states[n] for n in names])  # (n_total, layers, d)
    labels = np.concatenate([np.full(len(states[n]), i) for i, n in enumerate(names)])
    if shuffle_labels:
        labels = np.random.default_rng(seed).permutation(labels)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    rows = []
    for layer in range(features.shape[1]):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
        scores = cross_val_score(probe, features[:, layer], labels, cv=splitter)
        rows.append({"layer": layer, "accuracy": float(scores.mean()), "chance": 1 / len(names)})
    return pd.DataFrame(rows)
