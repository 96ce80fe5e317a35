"""Alignment-graph lookups by layer name, for tests that check the graph of a known model."""


def layer(graph, name):
    """The (first call of the) layer called `name` in `graph`."""
    return next(lay for lay in graph.layers if lay.name == name)


def group(graph, name):
    """The group of layer `name`'s output units (the first, if GroupNorm or a slice cut them)."""
    return layer(graph, name).out[0].group
