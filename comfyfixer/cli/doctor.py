"""`comfyfixer doctor`: check the LLM endpoint and say plainly what works and what to fix.

Exit 0 when the agent can run (or no endpoint is configured: it is optional, and the run then uses
the direct sources only); exit 1 when an endpoint is configured but does not work.
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

    settings = Settings.from_env(os.environ)
    status = check_endpoint(settings)
    failed = status.configured and not status.ok
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
                    "thinking_switch": status.thinking,
                    "seconds": status.seconds,
                },
                "sources": _sources(settings),
            }
        )
        if failed:
            raise SystemExit(1)  # not typer.Exit: see cli/run.py
        return
    out = stdout_console()
    if status.ok:
        out.print(f"LLM agent: OK: {status.model} at {status.base_url}")
        out.print(f"  {status.reason}; thinking switch: {status.thinking}; answered in {status.seconds:.1f}s")
    elif not status.configured:
        out.print("LLM agent: not configured (optional): runs use the direct sources only.")
        out.print(f"  To enable it: {next_step}")
    else:
        out.print(f"LLM agent: NOT WORKING at {status.base_url}: {status.reason}")
        if next_step:
            out.print(f"  Fix: {next_step}")
        out.print("  Until then, runs use the direct sources only.")
    for name, line in _sources(settings).items():
        out.print(f"{name}: {line}")
    if failed:
        raise SystemExit(1)


def _sources(settings: Settings) -> dict[str, str]:
    def token(value: str | None, variable: str) -> str:
        return "token set" if value else f"no token ({variable} unset: public files only)"

    return {
        "Hugging Face": f"{settings.hf_endpoint}, {token(settings.hf_token, 'HF_TOKEN')}",
        "Civitai": f"{settings.civitai_url}, {token(settings.civitai_token, 'CIVITAI_API_TOKEN')}",
        "Catalogue": settings.catalog_url or "off",
    }
