"""The networks, losses and method registry of the reproduction (self-contained: imports nothing from bench).

Importing the package fills `methods.registry.REGISTRY` in a fixed order: the paper's method and its variants,
the floors, then the re-implemented comparisons. `methods.registry` holds the types; each module below builds
its entries from them and registers them (no module imports the package's other method modules but
`methods.common`, so there is no import cycle).
"""

# Registration order is the order of `bench list` and of the reports: not alphabetical.
from methods import ours, trivial, jin2018, srn  # noqa: F401, I001
