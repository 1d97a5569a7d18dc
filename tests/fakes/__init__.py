"""Loopback fakes of the services comfyfixer talks to: file server/CDN, Hugging Face Hub, Civitai.

See README.md in this folder for how to start each one and what it serves.
"""

from tests.fakes.civitai import FakeCivitai
from tests.fakes.files import Blob, FileServer, sparse_file
from tests.fakes.hub import FakeHub
from tests.fakes.server import Exchange, FakeServer, RecordedRequest
from tests.fakes.world import ExpectedFile, World, WorldEndpoints, local_settings, start_world

__all__ = [
    "Blob",
    "Exchange",
    "ExpectedFile",
    "FakeCivitai",
    "FakeHub",
    "FakeServer",
    "FileServer",
    "RecordedRequest",
    "World",
    "WorldEndpoints",
    "local_settings",
    "sparse_file",
    "start_world",
]
