"""A RECIPE.py for ``eigenlens curvature``: a small MLP trained on scikit-learn's digits (offline data).

Run:  eigenlens curvature examples/recipe_digits.py --k 5 --trace --density --batch-sizes 16,64,256 \
          --json digits.json --plot digits.png

The contract — a recipe is a Python file defining:

* ``model() -> torch.nn.Module``: the model to analyse (trained here in a couple of seconds; usually you would
  load a checkpoint). Put it in eval mode if it has dropout / batch norm: the determinism probe refuses
  active dropout and train-mode batch norm.
* ``loss() -> loss_fn``: ``loss_fn(outputs, targets)`` returns the MEAN loss of a batch.
* ``data() -> (inputs, targets)`` or a re-iterable of such batches (a list, a ``DataLoader`` with
  ``shuffle=False``). Inputs may be a tensor, a tuple of tensors or a dict of tensors (keyword arguments).
  The curvature is that of the dataset-mean loss; batches are weighted by size.
* optionally ``optimizer(model) -> torch.optim.Optimizer``: its momentum / Adam state feeds the
  learning-rate advice (Adam's preconditioned sharpness needs a state, i.e. steps taken);
* optionally ``num_classes = C``: for the outlier count (inferred from the output width for cross-entropy).

The CLI calls ``model()``, ``loss()``, ``data()``, then ``optimizer(model)``, once each.
"""

import torch
from sklearn.datasets import load_digits
from torch import nn

_STATE = {}


def _xy():
    d = load_digits()
    X = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    return X, y


def model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    X, y = _xy()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(X[idx]), y[idx]).backward()
            opt.step()
    _STATE["opt"] = opt
    return net.eval()


def loss():
    return nn.CrossEntropyLoss()


def data():
    X, y = _xy()
    return [(X[i : i + 512], y[i : i + 512]) for i in range(0, len(y), 512)]


def optimizer(net):
    return _STATE.get("opt")


num_classes = 10
