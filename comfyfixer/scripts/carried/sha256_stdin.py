"""Print the sha256 of standard input: the hasher of a script when openssl is missing.

Carried verbatim by every download script and run as python -S -c <this file>: standard library only.
"""

import hashlib
import sys


def main() -> int:
    h = hashlib.sha256()
    for block in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
        h.update(block)
    print(h.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
