"""Blobs: three Gaussian classes in 20 dimensions, and a one-hidden-layer MLP."""
import numpy as np
import torch
from torch import nn

import trainables


def load_blobs(data_root, download):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1.0, (3, 20))

    def draw(n):
        y = rng.integers(0, 3, n)
        x = centres[y] + rng.normal(0, 1.5, (n, 20))
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y)

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = draw(600), draw(200), draw(200)
    return trainables.Splits(train_x, train_y, val_x, val_y, test_x, test_y, num_classes=3)


def build(config, splits):
    return nn.Sequential(nn.Linear(splits.train_x.shape[1], config["width"]),
                         trainables.make_activation(config["activation"]),
                         nn.Linear(config["width"], splits.num_classes))


trainables.register_dataset("blobs", load_blobs)
trainables.register_trainable("blob_mlp", dataset="blobs", build=build,
                              defaults={"optimizer": "adam", "lr": 1e-2, "batch_size": 50, "epochs": 3},
                              extra={"width": 32})
