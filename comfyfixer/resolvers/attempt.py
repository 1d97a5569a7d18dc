"""One model's pass through the resolver chain: the evidence `Finder` gathers as it goes (notes for the
log and the resolution, token/licence refusals, source failures, every candidate seen, a lone
unverified Hugging Face copy kept for the end), from which it concludes the outcome."""

from __future__ import annotations

from dataclasses import dataclass, field

from comfyfixer.models import Candidate, MissingModel


@dataclass(slots=True)
class Attempt:
    """Evidence gathered while resolving one model."""

    model: MissingModel
    evidence: list[str] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seen: list[Candidate] = field(default_factory=list)
    # A lone Hugging Face copy from an unknown uploader, kept in case Civitai has nothing better.
    unverified: list[Candidate] = field(default_factory=list)
    unverified_why: str = ""

    def note(self, text: str) -> None:
        self.evidence.append(text)
