"""One script per figure the README quotes; each prints a table, then one JSON line."""
