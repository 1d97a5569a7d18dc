"""Scan a pickle (or a zip of pickles) with picklescan before the script installs it.

Exit 0: clean; 1: dangerous imports; 2: not a pickle or cannot be parsed; 3: picklescan is missing.
Carried verbatim by every download script and run as python -c <this file> PART EXT.
"""

import sys


def main(path: str, ext: str) -> int:
    try:
        from picklescan.scanner import scan_bytes
    except Exception as exc:
        sys.stderr.write(f"comfyfixer: picklescan cannot be imported: {exc}\n")
        return 3
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
            if not (magic == b"PK\x03\x04" or magic[:1] == b"\x80"):
                sys.stderr.write("comfyfixer: the file is neither a pickle nor a zip of pickles\n")
                return 2
            fh.seek(0)
            result = scan_bytes(fh, path, ext)
    except Exception as exc:
        sys.stderr.write(f"comfyfixer: the pickle could not be scanned: {exc}\n")
        return 2
    bad = sorted({f"{g.module}.{g.name}" for g in result.globals if g.safety.name == "Dangerous"})
    if result.issues_count:
        sys.stderr.write("comfyfixer: dangerous imports in the pickle: {}\n".format(", ".join(bad)))
        return 1
    return 2 if result.scan_err else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
