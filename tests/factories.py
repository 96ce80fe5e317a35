"""A user-defined architecture, referenced from tests as `tests.factories:tiny_cnn`."""
from torch import nn


def tiny_cnn(input_shape, num_classes, channels: int = 4) -> nn.Module:
    """A small CNN built from supported layers, as a user would bring."""
    return nn.Sequential(nn.Conv2d(input_shape[0], channels, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(channels * input_shape[1] * input_shape[2], num_classes))
