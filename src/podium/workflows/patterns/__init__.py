"""The orchestration patterns as runtime nodes: sequential, parallel (and for-each),
orchestrator-worker, saga, plus conditional branches and bounded loops. All nest."""

from podium.workflows.patterns.branching import IfNode, LoopNode, SwitchNode
from podium.workflows.patterns.orchestrator import OrchestrateNode
from podium.workflows.patterns.parallel import ForEachNode, ParallelNode
from podium.workflows.patterns.saga import SagaNode
from podium.workflows.patterns.sequential import SequenceNode, run_sequence

__all__ = [
    "ForEachNode",
    "IfNode",
    "LoopNode",
    "OrchestrateNode",
    "ParallelNode",
    "SagaNode",
    "SequenceNode",
    "SwitchNode",
    "run_sequence",
]
