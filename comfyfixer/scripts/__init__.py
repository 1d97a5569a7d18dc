"""Download scripts: rendering them (`render`, pure) and running them (`run`, a subprocess).

`download.sh` is the constant body of every script and `carried/` holds the standard-library Python
programs each script carries; both ship in the wheel and are read with `importlib.resources`.
"""
