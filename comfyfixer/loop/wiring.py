"""The real stages behind the loop's Protocols (`comfyfixer.loop.stages`), built once at the CLI edge.

Small adapters only: script rendering (`scripts.render`), running (`scripts.run`), placement
(`layout.Layout.destination`) and checking (`verify`). The finder and the optional LLM
collaborators are passed in, already built from settings, so this module opens no connection.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from comfyfixer.config import Settings, pickle_allowed
from comfyfixer.errors import ComfyFixerError, UnsafePathError
from comfyfixer.layout import Layout
from comfyfixer.loop.stages import LLM_SKIPPED, Agent, Finder, Reviewer, Stages
from comfyfixer.models import Candidate, FileChecks, MissingModel
from comfyfixer.resolvers.names import install_name
from comfyfixer.resolvers.urls import token_kind
from comfyfixer.resolvers.validate import catalogue_grant
from comfyfixer.scripts.render import ScriptPlan, render_script, script_file_name
from comfyfixer.scripts.run import ScriptProcess, script_destination
from comfyfixer.verify import quarantine, verify_download


class RenderedScripts:
    """`ScriptMaker`: a `ScriptPlan` from the candidate, rendered by `scripts.render`.

    The token is chosen by the URL's origin, whatever source found the candidate; the script gets the
    run's host rule as data, and a catalogue's grant for a host outside it (with its provenance).
    """

    def __init__(
        self, settings: Settings, *, python: str = sys.executable, user_agent: str | None = None
    ) -> None:
        from comfyfixer.http import USER_AGENT

        self.settings = settings
        self.python = python
        self.user_agent = user_agent or USER_AGENT

    def render(
        self, number: int, model: MissingModel, candidate: Candidate, destination: Path
    ) -> tuple[str, str]:
        why = candidate.note or f"file name matches {model.file_name!r} exactly ({candidate.source})"
        try:
            plan = ScriptPlan(
                number=number,
                name=model.name,
                directory=model.directory,
                dest=destination,
                url=candidate.url,
                sha256=candidate.sha256.lower() if candidate.sha256 else None,
                size=candidate.size,
                auth=token_kind(candidate.url, self.settings),
                source=candidate.source,
                why=why,
                python=self.python,
                user_agent=self.user_agent,
                hosts=self.settings.host_rule,
                granted_by=catalogue_grant(candidate, self.settings),
            )
        except ValueError as exc:
            raise ComfyFixerError(f"the candidate cannot become a safe script: {exc}") from exc
        return script_file_name(number, model.name), render_script(plan)

    def owns(self, script: Path, destination: Path) -> bool:
        try:
            return script_destination(script) == destination
        except (OSError, UnicodeDecodeError, ValueError):  # not one of ours, or unreadable
            return False


class ScriptLauncher:
    """`Launcher`: `bash <script>` in its own process group, with the user's environment."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)

    def start(self, script: Path, *, log_path: Path, dest: Path) -> ScriptProcess:
        return ScriptProcess.start(script, env=self.env, log_path=log_path, dest=dest)


class LayoutPlacement:
    """`Placement`: the folder ComfyUI loads the model from, the name's sub-folders kept."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def destination(self, model: MissingModel, candidate: Candidate) -> Path:
        directory = model.directory or candidate.directory_hint
        if not directory:
            raise UnsafePathError(model.name, "no loader node or hint says which models folder it belongs in")
        # A prompt stem (`embedding:EasyNegative`) is installed with the chosen file's extension.
        return self.layout.destination(directory, install_name(model.name, candidate.filename))


class FileChecker:
    """`Checker`: the deterministic checks of `verify.py`, reusing the sha256 the script computed."""

    def __init__(self, *, allow_pickle: bool = False) -> None:
        self.allow_pickle = allow_pickle

    def verify(
        self, model: MissingModel, candidate: Candidate, path: Path, reported_sha256: str | None
    ) -> FileChecks:
        return verify_download(
            path,
            name=model.name,
            directory=model.directory,
            expected_size=candidate.size,
            expected_sha256=candidate.sha256,
            actual_sha256=reported_sha256,
            allow_pickle=self.allow_pickle,
            source=candidate.source,
            url=candidate.url,
        )

    def quarantine(self, path: Path) -> Path | None:
        return quarantine(path)


def build_stages(
    finder: Finder,
    layout: Layout,
    env: Mapping[str, str],
    *,
    settings: Settings | None = None,
    agent: Agent | None = None,
    reviewer: Reviewer | None = None,
    reviewer_skip_reason: str = LLM_SKIPPED,
) -> Stages:
    return Stages(
        finder=finder,
        scripts=RenderedScripts(settings or Settings.from_env(env)),
        launcher=ScriptLauncher(env),
        checker=FileChecker(allow_pickle=pickle_allowed(env)),
        placement=LayoutPlacement(layout),
        agent=agent,
        reviewer=reviewer,
        reviewer_skip_reason=reviewer_skip_reason,
    )
