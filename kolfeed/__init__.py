"""kolfeed: the command line that wires the areas (recsys, training, features, serving) together."""

__version__ = "0.1.0"
