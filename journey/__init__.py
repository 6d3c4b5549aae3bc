"""Journey platform: the shared core (settings, errors, contracts, events, stages, datasets, stores, registry).

It imports nothing of ours above it (`training`, `serving`, `benchmarks`, `cli`): import-linter's contracts in
`.importlinter` keep it so. `journey/README.md` lists its modules.
"""

__version__ = "0.1.0"
