"""One file per registry schema change, `NNNN_<what>.py`, applied in order; never edit one that has shipped."""
