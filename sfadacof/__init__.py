"""SF-AdaCoF and the AdaCoF family: model, synthesis op, checkpoints, training, data, metrics."""

__version__ = "0.1.0"
