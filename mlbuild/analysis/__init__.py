"""Analysis: configured targets → the action graph."""
