"""One module per block harness; every module here registers itself when imported."""
