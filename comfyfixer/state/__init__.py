"""Persistent state in the output folder: atomic JSON files, the script counter, run records."""
