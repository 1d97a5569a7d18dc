"""Serve a GGUF model with llama.cpp's OpenAI-compatible server (xllamacpp) on 127.0.0.1 until killed.

Runs under the interpreter that has `xllamacpp` installed (bench/real_qwen.py makes that venv), not the
project's: `python bench/llama_server.py MODEL.gguf --alias NAME --port PORT [--threads N] [--ctx N]`.
Prints one line `listening <address>` once the server is up.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--alias", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=8192)
    args = parser.parse_args()

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}  # a set: the name(s) /v1/models lists and requests may use
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = 1
    params.use_jinja = True  # the model's own chat template, with its tool-calling section
    params.warmup = False
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(params)
    print(f"listening {server.listening_address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
