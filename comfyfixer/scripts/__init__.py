"""Download scripts: rendering them (`render`, pure) and running them (`run`, a subprocess)."""
