"""Append standard input to the partial file and print the sha256 of the whole part.

What was already there is re-read first (a retry), then the new bytes are hashed as they arrive,
so a successful download is hashed exactly once. Unbuffered writes keep the part a clean prefix of
the file even when the process is killed. Carried verbatim by every download script and run as
python -S -c <this file> PART: standard library only.
"""

import hashlib
import sys


def main(part: str) -> int:
    h = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    try:
        with open(part, "rb") as old:
            for n in iter(lambda: old.readinto(buf), 0):
                h.update(view[:n])
        # Unbuffered stdin: readinto returns what the pipe holds at once instead of waiting for 1 MiB.
        with (
            open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as src,
            open(part, "ab", buffering=0) as out,
        ):
            for n in iter(lambda: src.readinto(buf), 0):
                done = 0
                while done < n:
                    done += out.write(view[done:n])
                h.update(view[:n])
    except OSError as exc:
        sys.stderr.write(f"comfyfixer: cannot write the partial file: {exc}\n")
        return 1
    print(h.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
