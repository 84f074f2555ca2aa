"""anemonectl: the operator's client for anemoned."""
