"""Where Journey keeps data: the offline store (Parquet, PostgreSQL), materialisation to the online store, pushes
and the prediction log."""
