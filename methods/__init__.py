"""The networks, losses and method registry of the reproduction (self-contained: imports nothing from bench).

Importing the package fills `methods.registry.REGISTRY` in a fixed order (paper, its variants, baselines).
"""

from methods import registry  # noqa: F401  (fills the registry)
