"""The digits split shared by the examples: scikit-learn's 8×8 digits (offline, real), pixels scaled to [0, 1]."""

import torch
from sklearn.datasets import load_digits


def digits(seed: int = 0, n_train: int = 1200):
    """Return ``X_train [n_train, 64] float32, y_train [n_train] int64, X_test, y_test`` (seeded shuffle)."""
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X, dtype=torch.float32) / 16.0
    y = torch.tensor(y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    tr, te = perm[:n_train], perm[n_train:]
    return X[tr], y[tr], X[te], y[te]
