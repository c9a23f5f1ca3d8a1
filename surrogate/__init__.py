"""elmpipe fitting and evaluation: surrogate models, training, metrics (PyTorch).

This package never imports ``simulations``: it meets the data stage only in the Zarr dataset
schema (docs/dataset.md).
"""
