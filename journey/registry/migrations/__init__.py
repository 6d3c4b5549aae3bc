"""Alembic migrations of the model registry (run by `journey.registry.Registry.migrate`, never imported as code)."""
