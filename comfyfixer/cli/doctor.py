"""`comfyfixer doctor`: check every source and the LLM endpoint, and say plainly what works and what to fix.

Hugging Face, Civitai and the catalogue get the run's start-up probe (one cheap request each, in
parallel, a few seconds); the LLM endpoint gets its full check (models listed, one tool call).
Exit 0 when everything configured works (no LLM endpoint is fine: it is optional); exit 1 when a source
cannot be reached or a configured endpoint does not work.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from comfyfixer.cli.console import print_json, stdout_console
from comfyfixer.cli.errors import endpoint_next_step
from comfyfixer.config import Settings


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Check the LLM endpoint (list models, make one tool call) and the configured sources."""
    from comfyfixer.agent import check_endpoint
    from comfyfixer.health import probe_sources

    settings = Settings.from_env(os.environ)
    probes = probe_sources(settings, skip=("llm",))
    status = check_endpoint(settings)
    failed = (status.configured and not status.ok) or not all(p.ok for p in probes)
    next_step = endpoint_next_step(status)
    if json_output:
        print_json(
            {
                "llm": {
                    "ok": status.ok,
                    "configured": status.configured,
                    "reason": status.reason,
                    "hint": next_step,
                    "base_url": status.base_url,
                    "model": status.model,
                    "models": list(status.models),
                    "supports_tools": status.supports_tools,
                    "tool_calling": status.tool_calling,
                    "protocol": status.protocol,
                    "thinking_switch": status.thinking,
                    "seconds": status.seconds,
                },
                "sources": {
                    p.source: {
                        "ok": p.ok,
                        "url": p.url,
                        "detail": p.detail,
                        "auth": _token(settings, p.source),
                    }
                    for p in probes
                },
            }
        )
        if failed:
            raise SystemExit(1)  # not typer.Exit: see cli/run.py
        return
    out = stdout_console()
    if status.ok:
        out.print(f"LLM agent: OK: {status.model} at {status.base_url}")
        out.print(f"  {status.reason}; thinking switch: {status.thinking}; answered in {status.seconds:.1f}s")
        out.print(f"  protocol: {status.protocol_words}")
    elif not status.configured:
        out.print("LLM agent: not configured (optional): runs use the direct sources only.")
        out.print(f"  To enable it: {next_step}")
    else:
        out.print(f"LLM agent: NOT WORKING at {status.base_url}: {status.reason}")
        if next_step:
            out.print(f"  Fix: {next_step}")
        out.print("  Until then, runs use the direct sources only.")
    for p in probes:
        auth = _token(settings, p.source)
        state = "OK" if p.ok else "UNREACHABLE"
        out.print(f"{p.title}: {state}: {p.url}{', ' + auth if auth else ''}", markup=False)
        out.print(f"  {p.detail}", markup=False)
    if not settings.catalog_url:
        out.print("catalogue: off (COMFYFIXER_CATALOG_URL=off)")
    if failed:
        raise SystemExit(1)


def _token(settings: Settings, source: str) -> str:
    def token(value: str | None, variable: str) -> str:
        return "token set" if value else f"no token ({variable} unset: public files only)"

    if source == "huggingface":
        return token(settings.hf_token, "HF_TOKEN")
    if source == "civitai":
        return token(settings.civitai_token, "CIVITAI_API_TOKEN")
    return ""
