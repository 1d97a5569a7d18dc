"""The run loop: search → script → download → verify → review, one model at a time, overlapped.

A glossary of the package, one noun per file (ARCHITECTURE.md places it among the stages):

- `pipeline`    the loop itself: the order, the overlap, the threads (`Pipeline`, `LoopOptions`).
- `stages`      its protocols: the collaborators it composes (`Finder`, `Launcher`, …) and `Stages`.
- `inbox`       its messages: what the worker threads post to the main thread.
- `search`      one model's search (the search thread's work): the direct sources, then the agent.
- `acceptance`  whether a finished download is kept: checks, quarantine, its record, the LLM review.
- `live_status` what a run shows while it runs: speeds and `status.json`.
- `installed`   the needed models already on disk, as results (`run --json` lists every model).
- `result`      what a run produced: `ModelResult`, `RunResult`, failure reasons, the `run --json` report.
- `wiring`      the real stages behind the protocols, built once at the CLI edge.

Nothing here prints; `cli/driver.py` builds and drives it, `cli/run.py` renders its result.
"""
