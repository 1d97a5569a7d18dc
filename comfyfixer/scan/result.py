"""What a scan yields: every workflow read, every reference classified, the models to fetch."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from comfyfixer.inventory import Inventory
from comfyfixer.models import MissingModel, Reference, WorkflowResult


@dataclass(slots=True)
class ScanResult:
    """Every workflow read, every reference classified, and the de-duplicated list of models to fetch."""

    workflows: list[WorkflowResult]
    missing: list[MissingModel]
    comfyui_root: Path | None = None
    inventory: Inventory | None = None
    include_bypassed: bool = False
    generated_at: float = field(default_factory=time.time)

    @property
    def references(self) -> list[Reference]:
        return [ref for wf in self.workflows for ref in wf.references]

    @property
    def text_references(self) -> list[Reference]:
        return [ref for wf in self.workflows for ref in wf.text_references]

    @property
    def unreadable(self) -> list[WorkflowResult]:
        return [wf for wf in self.workflows if wf.error]

    def target_dir(self, model: MissingModel) -> Path | None:
        """Where `model` would be downloaded, when the install and its folder are known."""
        if self.inventory is None or model.directory is None:
            return None
        return self.inventory.layout.target_dir(model.directory)

    def counts(self) -> dict[str, int]:
        refs = self.references
        out = {
            "workflows": len(self.workflows),
            "unreadable": len(self.unreadable),
            "references": len(refs),
            "bypassed": sum(1 for r in refs if r.bypassed),
            "text_references": len(self.text_references),
            "missing_models": len(self.missing),
        }
        for status in ("present", "misplaced", "missing", "unknown"):
            out[status] = sum(1 for r in refs if r.status == status)
        return out
