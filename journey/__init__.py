"""Journey platform: the shared core (settings, events, datasets, registry, CLI).

Nothing in this package imports `training`, `serving` or `benchmarks` at module level; the CLI reaches them lazily
inside its commands because it is the composition root (tests/unit/test_layering.py keeps this true).
"""

__version__ = "0.1.0"
