"""The resolver chain: hints → verified catalogue → Manager catalogue → Hugging Face → Civitai.

`Finder.find(model)` returns a `Resolution` and never raises for source problems. A file is
accepted only when its name equals the referenced base name (or the workflow itself pairs the name
with the URL), one file is singled out (see `decide.py`), and the validator proved its URL serves a
file. Outcomes: found, ambiguous (candidates attached), not_found (every source answered "no") and
source_error (a source failed, or the file needs a token / licence acceptance — said how).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from comfyfixer.config import Settings
from comfyfixer.errors import SourceError
from comfyfixer.http import HttpSession, RequestCounter, build_client, hub_client
from comfyfixer.models import Candidate, MissingModel, Resolution, SearchOutcome
from comfyfixer.resolvers.attempt import Attempt
from comfyfixer.resolvers.catalogue import VERIFIED_NAME, Catalogue, VerifiedCatalogue
from comfyfixer.resolvers.civitai import CivitaiSource
from comfyfixer.resolvers.decide import ESTABLISHED, TRUSTED, decide
from comfyfixer.resolvers.hints import HintPlan, plan_hints
from comfyfixer.resolvers.names import accepts, best_extension_only, is_stem, search_name
from comfyfixer.resolvers.queries import context_relevance, is_generic, relevance
from comfyfixer.resolvers.urls import LinkTarget
from comfyfixer.resolvers.validate import ValidationFailed, Validator
from comfyfixer.retry import RetryPolicy
from comfyfixer.transport import Breakers

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from comfyfixer.resolvers.huggingface import HuggingFaceSource, Publishers

log = logging.getLogger(__name__)
# Civitai model types a prompt stem can name: `embedding:` -> TextualInversion, `<lora:>` -> LORA/LyCORIS.
STEM_CIVITAI_TYPES = {"embeddings": ["TextualInversion"], "loras": ["LORA", "LoCon"]}
BREAKER_THRESHOLD = 3  # consecutive failed searches after which a source is skipped for the run


def _filing(candidate: Candidate) -> str:
    """Where a candidate's folder hint comes from, in words."""
    if candidate.source == "catalogue":
        return "the catalogue's save_path/type"
    if candidate.source == "civitai":
        return "the Civitai model type"
    if candidate.path_in_repo:
        return f"its place in the repo ({candidate.path_in_repo})"
    return f"the {candidate.source} record"


class Finder:
    """Resolves missing models one at a time. Attributes `huggingface`, `civitai`, `catalogue`,
    `verified` and `validator` are the building blocks the LLM agent's tools use."""

    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.Client,
        hf_api: HfApi | None,
        catalogue: Catalogue | None = None,
        catalogue_cache: Path | None = None,
        verified: VerifiedCatalogue | None = None,
        policy: RetryPolicy | None = None,
        publishers: Publishers | None = None,
        civitai: bool = True,
    ) -> None:
        self.settings = settings
        self.http = http
        self.counter = RequestCounter()
        self.session = HttpSession(http, policy=policy, counter=self.counter, secrets=settings.secrets)
        # Unless one is handed in, the Manager catalogue fetches through this run's session (counted,
        # retried) and caches under `catalogue_cache`; an injected catalogue is used as it was built.
        self.catalogue = catalogue or Catalogue(settings, self.session, catalogue_cache)
        self.verified = verified or VerifiedCatalogue(settings, None)
        self.validator = Validator(settings, self.session)
        self.huggingface: HuggingFaceSource | None = None
        if hf_api is not None:
            from comfyfixer.resolvers.huggingface import HuggingFaceSource

            self.huggingface = HuggingFaceSource(
                settings, hf_api, counter=self.counter, publishers=publishers
            )
        self.civitai: CivitaiSource | None = CivitaiSource(settings, self.session) if civitai else None
        self._failures: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        # source -> the start-up probe's sentence ("Hugging Face unreachable: …")
        self.down: dict[str, str] = {}

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        output_dir: Path,
        policy: RetryPolicy | None = None,
        breakers: Breakers | None = None,
    ) -> Finder:
        """A Finder with real clients built from settings (the CLI edge calls this once per run).

        Both HTTP stacks (ours and huggingface_hub's) share `breakers`, so a host found down by the
        start-up probe, or failing mid-run, is not called again by either.
        """
        from huggingface_hub import HfApi, set_client_factory

        breakers = breakers if breakers is not None else Breakers()
        set_client_factory(lambda: hub_client(breakers))
        http = build_client(breakers=breakers)
        hf_api = HfApi(endpoint=settings.hf_endpoint, token=settings.hf_token or False)
        verified = VerifiedCatalogue(settings, output_dir / VERIFIED_NAME)
        return cls(
            settings,
            http=http,
            hf_api=hf_api,
            catalogue_cache=output_dir / "cache",
            verified=verified,
            policy=policy,
        )

    def close(self) -> None:
        log.info(
            "resolver requests: %d over %d model(s), %.1f per model; by source %s",
            self.counter.total,
            self.counter.models,
            self.counter.average_per_model,
            dict(self.counter.by_source),
        )
        self.http.close()

    def __enter__(self) -> Finder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building blocks -----------------------------------------------------------------------------
    def check(self, model: MissingModel, candidate: Candidate, *, check_name: bool = True) -> Candidate:
        """Validate a candidate for `model`: exact name (unless the workflow paired it), then the URL.

        Raises ValidationFailed. The agent calls this before accepting anything an LLM picked.
        """
        if check_name and not accepts(model.file_name, candidate.filename):
            raise ValidationFailed(f"file name {candidate.filename!r} is not {model.file_name!r}")
        return self.validator.validate(candidate, check_name=check_name)

    def _try(
        self, attempt: Attempt, candidates: Iterable[Candidate], *, check_name: bool = True
    ) -> Candidate | None:
        """The first candidate that validates; rejections are recorded on the attempt."""
        for c in candidates:
            attempt.seen.append(c)
            try:
                ok = self.check(attempt.model, c, check_name=check_name)
            except ValidationFailed as exc:
                attempt.note(f"rejected {c.source} {c.url}: {exc.reason}")
                if exc.auth_required:
                    attempt.auth.append(exc.reason)
                elif exc.transient:
                    attempt.errors.append(f"{c.source}: {exc.reason}")
                continue
            attempt.note(f"accepted {c.source} {c.url} ({ok.size} bytes)")
            return ok
        return None

    def _settle(
        self,
        attempt: Attempt,
        source: str,
        candidates: list[Candidate],
        expected_sha: str | None,
        trust: Callable[[Candidate], int],
    ) -> tuple[Candidate | None, list[Candidate], str]:
        """Decide among one source's candidates: (accepted, ambiguous representatives, reason)."""
        if not candidates:
            return None, [], ""
        model = attempt.model
        candidates = best_extension_only(model.file_name, candidates)
        generic = is_generic(model.file_name)

        def related(c: Candidate) -> int:
            if generic:
                return context_relevance(model.context, c.repo or "")
            return relevance(search_name(model.file_name), c.repo or "")

        decision = decide(
            candidates,
            model.directory,
            expected_sha256=expected_sha,
            relevance=related,
            trust=trust,
            generic=generic,
        )
        attempt.note(f"{source}: {len(candidates)} exact-name candidate(s); {decision.reason}")
        if decision.winner is not None:
            group = next(g for g in decision.groups if decision.winner in g)
            return self._try(attempt, group), [], decision.reason
        if decision.ambiguous:
            return None, [g[0] for g in decision.groups], f"{source}: {decision.reason}"
        return None, [], decision.reason

    def _found(self, attempt: Attempt, candidate: Candidate, why: str = "") -> Resolution:
        reason = f"found on {candidate.source}" + (f" ({why})" if why else "")
        if attempt.model.directory is None and candidate.directory_hint:
            # No loader node said where it goes: the source's own filing is the evidence.
            reason += f"; folder {candidate.directory_hint}/ inferred from {_filing(candidate)}"
        return self._finish(attempt, "found", reason, candidate=candidate)

    def _finish(
        self,
        attempt: Attempt,
        outcome: SearchOutcome,
        reason: str,
        *,
        candidate: Candidate | None = None,
        candidates: list[Candidate] | None = None,
    ) -> Resolution:
        requests = self.counter.end_model()
        model = attempt.model
        resolution = Resolution(
            model=model,
            outcome=outcome,
            candidate=candidate,
            candidates=candidates if candidates is not None else ([candidate] if candidate else []),
            reason=reason,
            evidence=attempt.evidence,
            requests=requests,
        )
        self.outcomes[outcome] += 1
        log.info("%s [%s]: %s — %s (%d requests)", model.name, model.directory, outcome, reason, requests)
        for line in attempt.evidence:
            log.debug("  %s: %s", model.name, line)
        return resolution

    def mark_down(self, source: str, sentence: str) -> None:
        """The start-up probe found `source` unreachable: skip it for the run, saying `sentence` per model."""
        self.down[source] = sentence

    def _source_open(self, attempt: Attempt, source: str) -> bool:
        if source in self.down:
            attempt.note(self.down[source])
            attempt.errors.append(self.down[source])
            return False
        if self._failures[source] >= BREAKER_THRESHOLD:
            text = f"{source} skipped: it failed {self._failures[source]} times in a row this run"
            attempt.note(text)
            attempt.errors.append(text)
            return False
        return True

    def _record_errors(
        self, attempt: Attempt, source: str, errors: list[SourceError], had_answer: bool
    ) -> None:
        for exc in errors:
            attempt.note(f"{source} error: {exc.message}")
            (attempt.auth if exc.auth_required else attempt.errors).append(exc.message)
        if errors and not had_answer:
            self._failures[source] += 1
        else:
            self._failures[source] = 0

    # -- the chain -----------------------------------------------------------------------------------
    def find(self, model: MissingModel) -> Resolution:
        """Resolve one missing model. Never raises for source problems."""
        self.counter.begin_model()
        attempt = Attempt(model)
        plan = plan_hints(model, self.settings)
        for step in (self._from_hints, self._from_catalogues, self._from_huggingface, self._from_civitai):
            result = step(attempt, plan)
            if result is not None:
                return result
        return self._conclude(attempt)

    def _from_hints(self, attempt: Attempt, plan: HintPlan) -> Resolution | None:
        """1. The workflow's own hints: its URLs, then the repos and model pages it links to."""
        for text in plan.rejected:
            attempt.note(text)
        for candidate, check_name in plan.candidates:
            ok = self._try(attempt, [candidate], check_name=check_name)
            if ok is not None:
                return self._found(attempt, ok, candidate.note)
        for link in plan.links:
            result = self._from_link(attempt, link, plan.sha256)
            if result is not None:
                return result
        return None

    def _from_catalogues(self, attempt: Attempt, plan: HintPlan) -> Resolution | None:
        """2. Files this tool verified before, then ComfyUI-Manager's list."""
        model = attempt.model
        ok = self._try(attempt, self.verified.lookup(model.file_name, model.directory), check_name=False)
        if ok is not None:
            return self._found(attempt, ok, "verified in an earlier run")
        hits = self.catalogue.lookup(model.file_name, model.directory)
        ok, _, why = self._settle(attempt, "catalogue", hits, plan.sha256, lambda c: TRUSTED)
        if ok is not None:
            return self._found(attempt, ok, why)
        # An ambiguous catalogue entry is not reported: the hubs publish hashes and may settle it.
        if self.catalogue.status.startswith("unavailable"):
            attempt.note(f"catalogue {self.catalogue.status}")
        return None

    def _from_huggingface(self, attempt: Attempt, plan: HintPlan) -> Resolution | None:
        """3. Hugging Face."""
        if self.huggingface is None or not self._source_open(attempt, "huggingface"):
            return None
        hub = self.huggingface.find(attempt.model.file_name, context=attempt.model.context)
        attempt.note(
            f"huggingface: queries {hub.queries}, {len(hub.repos)} repo(s) listed, "
            f"{len(hub.candidates)} exact-name file(s)"
        )
        self._record_errors(attempt, "huggingface", hub.errors, had_answer=bool(hub.candidates))
        trust = self.huggingface.trust
        ok, reps, why = self._settle(attempt, "huggingface", hub.candidates, plan.sha256, trust)
        if ok is not None:
            return self._found(attempt, ok, why)
        if len(reps) > 1:
            return self._finish(attempt, "ambiguous", why, candidates=reps)
        if reps:
            # A lone copy from an unknown uploader: Civitai may still have the real thing.
            attempt.unverified, attempt.unverified_why = reps, why
        return None

    def _from_civitai(self, attempt: Attempt, plan: HintPlan) -> Resolution | None:
        """4. Civitai."""
        if self.civitai is None or not self._source_open(attempt, "civitai"):
            return None
        model = attempt.model
        types = STEM_CIVITAI_TYPES.get(model.directory or "") if is_stem(model.file_name) else None
        cv = self.civitai.find(model.file_name, sha256=plan.sha256, types=types)
        for text in cv.rejected:
            attempt.note(text)
        attempt.note(f"civitai: queries {cv.queries}, {len(cv.candidates)} exact-name file(s)")
        self._record_errors(attempt, "civitai", cv.errors, had_answer=bool(cv.candidates))
        # A Civitai listing is the uploader's own page: established, never a trusted publisher.
        ok, reps, why = self._settle(attempt, "civitai", cv.candidates, plan.sha256, lambda c: ESTABLISHED)
        if ok is not None:
            return self._found(attempt, ok, why)
        if reps:
            return self._finish(attempt, "ambiguous", why, candidates=reps)
        return None

    def _conclude(self, attempt: Attempt) -> Resolution:
        """No source settled it: say whether it is ambiguous, a source failed, or nothing exists."""
        if attempt.unverified:
            return self._finish(attempt, "ambiguous", attempt.unverified_why, candidates=attempt.unverified)
        if attempt.auth:
            return self._finish(attempt, "source_error", attempt.auth[0])
        if attempt.errors:
            down = [e for e in attempt.errors if e in self.down.values()]
            reason = "; ".join(down) if down else f"a source failed: {attempt.errors[0]}"
            return self._finish(attempt, "source_error", reason)
        if attempt.seen:
            return self._finish(attempt, "not_found", "every candidate with this name was rejected")
        return self._finish(attempt, "not_found", f"no source has a file named {attempt.model.file_name!r}")

    def _from_link(self, attempt: Attempt, link: LinkTarget, expected_sha: str | None) -> Resolution | None:
        """Look inside a Hub repo or Civitai model page the workflow links to."""
        name = attempt.model.file_name
        hits: list[Candidate] = []
        try:
            if link.kind == "hf_repo" and link.repo and self.huggingface is not None:
                hits = [
                    self.huggingface.candidate_for(link.repo, f.path)
                    for f in self.huggingface.list_files(link.repo)
                    if accepts(name, f.path)
                ]
            elif link.kind == "civitai_model" and link.model_id is not None and self.civitai is not None:
                item = self.civitai.model(link.model_id)
                if item is not None:
                    hits = self.civitai.candidates_in_model(item, name, version_id=link.version_id)
        except SourceError as exc:
            attempt.note(f"workflow link {link.url}: {exc.message}")
            (attempt.auth if exc.auth_required else attempt.errors).append(exc.message)
            return None
        attempt.note(f"workflow link {link.url}: {len(hits)} exact-name file(s)")
        ok, reps, why = self._settle(attempt, "workflow link", hits, expected_sha, lambda c: TRUSTED)
        if ok is not None:
            return self._found(attempt, ok, f"linked from the workflow; {why}")
        if reps:
            return self._finish(attempt, "ambiguous", why, candidates=reps)
        return None
