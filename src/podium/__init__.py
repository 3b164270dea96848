"""Podium: durable multi-model AI workflows behind one governed gateway.

>>> import podium
>>> result = podium.run_sync("examples/hello.yaml", {"name": "Ada"})
>>> result.output["greeting"]
'Hello, Ada!'
"""

from podium import dsl
from podium.config import Settings
from podium.errors import (
    DefinitionError,
    DefinitionIssue,
    ModelError,
    NonDeterminism,
    PodiumError,
    QuorumNotMet,
    ReviewRejected,
    RunCancelled,
    RunNotFound,
    SagaAborted,
    StepFailed,
    StepTimeout,
    StoreError,
    WorkflowError,
)
from podium.store import MemoryStore, open_store
from podium.types import Clock, ModelCall, ModelGateway, ModelReply, Store
from podium.workflows.api import run, run_sync
from podium.workflows.context import StepContext
from podium.workflows.engine import Engine, RunResult
from podium.workflows.plan import Plan, load_text, load_workflow, plan
from podium.workflows.resolve import Registry
from podium.workflows.spec import RetryPolicy, Workflow

__version__ = "0.1.0"

__all__ = [
    "Clock",
    "DefinitionError",
    "DefinitionIssue",
    "Engine",
    "MemoryStore",
    "ModelCall",
    "ModelError",
    "ModelGateway",
    "ModelReply",
    "NonDeterminism",
    "Plan",
    "PodiumError",
    "QuorumNotMet",
    "Registry",
    "RetryPolicy",
    "ReviewRejected",
    "RunCancelled",
    "RunNotFound",
    "RunResult",
    "SagaAborted",
    "Settings",
    "StepContext",
    "StepFailed",
    "StepTimeout",
    "Store",
    "StoreError",
    "Workflow",
    "WorkflowError",
    "__version__",
    "dsl",
    "load_text",
    "load_workflow",
    "open_store",
    "plan",
    "run",
    "run_sync",
]
