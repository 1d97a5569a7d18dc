"""The scan stage: workflow files → classified references → the missing models to fetch.

    discover.py   which files a scan reads
    stage.py      the stage itself: parse (here or in `forked.py` helpers), classify, plan
    missing.py    de-duplicating the references that need a download into missing models
    result.py     `ScanResult`, what the stage hands on
    documents.py  the JSON it writes and prints (`missing_models.json`, `scan --json`)

Parsing one file is `comfyfixer.workflow`; the install's folders are `comfyfixer.layout`, its files
`comfyfixer.inventory`.
"""

from comfyfixer.scan.discover import WORKFLOW_SUFFIXES, discover
from comfyfixer.scan.documents import (
    PLAN_FILE,
    missing_json,
    reference_json,
    scan_json,
    workflow_json,
    write_plan,
)
from comfyfixer.scan.missing import attach_context, plan
from comfyfixer.scan.result import ScanResult
from comfyfixer.scan.stage import parallel_workers, parse_workflow, scan, scan_with_settings

__all__ = [
    "PLAN_FILE",
    "WORKFLOW_SUFFIXES",
    "ScanResult",
    "attach_context",
    "discover",
    "missing_json",
    "parallel_workers",
    "parse_workflow",
    "plan",
    "reference_json",
    "scan",
    "scan_json",
    "scan_with_settings",
    "workflow_json",
    "write_plan",
]
