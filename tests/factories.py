"""A user-defined architecture, referenced from tests as `tests.factories:tiny_cnn`."""

from torch import nn


def tiny_cnn(input_shape, num_classes, channels: int = 4) -> nn.Module:
    """A small CNN built from supported layers, as a user would bring."""
    return nn.Sequential(
        nn.Conv2d(input_shape[0], channels, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(channels * input_shape[1] * input_shape[2], num_classes),
    )


class _LogSoftmaxNet(nn.Module):
    """An MLP that returns log-probabilities, as models trained with NLL loss do."""

    def __init__(self, features: int, hidden: int, num_classes: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(features, hidden), nn.Linear(hidden, num_classes)

    def forward(self, x):
        return nn.functional.log_softmax(
            self.fc2(nn.functional.relu(self.fc1(x.flatten(1)))), dim=1
        )


def log_softmax_mlp(input_shape, num_classes, hidden: int = 16) -> nn.Module:
    """`_LogSoftmaxNet` for inputs of `input_shape`."""
    features = 1
    for s in input_shape:
        features *= s
    return _LogSoftmaxNet(features, hidden, num_classes)
