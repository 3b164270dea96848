"""Planning: check a validated definition for what a schema cannot (unique ids, references,
expressions, resolvable functions and sub-workflows) and compile it into runtime nodes.

Every problem becomes a ``DefinitionIssue`` located at file:line:column when the definition came
from YAML; all are reported at once.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from podium.errors import DefinitionError, DefinitionIssue
from podium.workflows import spec
from podium.workflows.context import Namespace, RunState
from podium.workflows.expressions import (
    ROOT_NAMES,
    Compiled,
    ExpressionError,
    compile_string,
    compile_value,
)
from podium.workflows.loader import Loc, Source, parse_yaml, validate_source
from podium.workflows.nodes import (
    CallNode,
    ModelNode,
    Node,
    ReviewNode,
    SubWorkflowNode,
)
from podium.workflows.patterns import (
    ForEachNode,
    IfNode,
    LoopNode,
    OrchestrateNode,
    ParallelNode,
    SagaNode,
    SequenceNode,
    SwitchNode,
    run_sequence,
)
from podium.workflows.resolve import Registry, ResolveError, resolve_function

_JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace"})
_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list[Any],
    "object": dict[str, Any],
    "any": Any,
}
_AGGREGATES = ("all", "first", "vote", "weighted")


@dataclass
class Plan:
    """A workflow ready to run: validated, resolved and compiled."""

    workflow: spec.Workflow
    root: list[Node]
    output: Compiled | None
    input_model: type[BaseModel]
    source: str
    """What a resume needs to rebuild this plan: YAML text, or ``python:<ref>``."""
    source_hash: str
    file: str | None = None
    """The definition file as the user named it (for messages)."""
    location: str | None = None
    """The definition file's absolute path (recorded with runs, for resume)."""
    children: list[Plan] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.workflow.name

    def validate_inputs(self, raw: Any) -> dict[str, Any]:
        """Check and coerce run inputs against the declared ``inputs``."""
        if raw is None:
            raw = {}
        try:
            return self.input_model.model_validate(raw).model_dump()
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                name = ".".join(str(p) for p in err["loc"]) or "inputs"
                if err["type"] == "extra_forbidden":
                    known = ", ".join(self.workflow.inputs) or "none"
                    problems.append(f"unknown input '{name}' (declared: {known})")
                elif err["type"] == "missing":
                    problems.append(f"missing required input '{name}'")
                else:
                    problems.append(f"input '{name}': {err['msg']}")
            raise DefinitionError(
                [
                    DefinitionIssue(f"workflow {self.name!r}: {p}", self.file or "<inputs>")
                    for p in problems
                ]
            ) from None

    async def execute(self, rt: RunState, ns: Namespace, prefix: str) -> Any:
        """Run the top-level steps under ``prefix`` and compute the output."""
        out = await run_sequence(rt, ns, prefix, self.root)
        if self.output is not None:
            return self.output.evaluate(ns)
        return out


def _callable_name(obj: Any) -> Any:
    if callable(obj):
        return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="python")
    raise TypeError(f"cannot hash {type(obj).__name__}")


def definition_hash(workflow: spec.Workflow) -> str:
    """A stable hash of a definition (callables by their qualified name)."""
    text = json.dumps(workflow.model_dump(mode="python"), sort_keys=True, default=_callable_name)
    return hashlib.sha256(text.encode()).hexdigest()


def _input_model(workflow: spec.Workflow) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, inp in workflow.inputs.items():
        typ = _TYPES[inp.type]
        fields[name] = (typ, ...) if inp.is_required else (typ | None, inp.default)
    model: type[BaseModel] = create_model(
        f"{workflow.name}_inputs".replace("-", "_").replace(".", "_"),
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    return model


class _Planner:
    def __init__(
        self,
        workflow: spec.Workflow,
        source: Source | None,
        registry: Registry,
        base_dir: Path | None,
        stack: tuple[str, ...],
    ) -> None:
        self.workflow = workflow
        self.source = source
        self.registry = registry
        self.base_dir = base_dir
        self.stack = stack
        self.file = source.file if source else f"<python:{workflow.name}>"
        self.issues: list[DefinitionIssue] = []
        self.ids: dict[str, Loc] = {}
        self.step_refs: list[tuple[str, Loc]] = []
        self.input_refs: list[tuple[str, Loc]] = []
        self.counter = 0
        self.children: list[Plan] = []

    # -- reporting ------------------------------------------------------------------------
    def issue(self, loc: Loc, message: str, hint: str | None = None) -> None:
        line = col = None
        if self.source is not None:
            pos, _ = self.source.locate(loc)
            if pos:
                line, col = pos
        key = ".".join(str(p) for p in loc) or None
        self.issues.append(DefinitionIssue(message, self.file, line, col, key, hint))

    # -- expressions ----------------------------------------------------------------------
    def _where(self, path: Loc, fallback: Loc) -> Loc:
        """The part of ``path`` that is written in the file (values the planner synthesises,
        like a model step's message list, are reported at ``fallback``)."""
        if self.source is None:
            return path
        _node, found = self.source.walk(path)
        return tuple(found) if len(found) >= len(fallback) else fallback

    def expr(self, value: Any, loc: Loc) -> Compiled:
        failed = False
        for path, text in _strings(value, loc):
            where = self._where(path, loc)
            try:
                compiled = compile_string(text)
            except ExpressionError as exc:
                self.issue(where, f"{exc} in {exc.source!r}")
                failed = True
                continue
            for name in sorted(compiled.refs.roots - ROOT_NAMES - _JINJA_GLOBALS):
                near = difflib.get_close_matches(name, sorted(ROOT_NAMES), n=1)
                self.issue(
                    where,
                    f"expression reads unknown name {name!r}",
                    f"did you mean '{near[0]}'?"
                    if near
                    else "expressions start from inputs, steps, "
                    "item, index, task, results, loop, saga or run",
                )
            self.step_refs.extend((s, where) for s in compiled.refs.steps)
            self.input_refs.extend((s, where) for s in compiled.refs.inputs)
        return compile_value(None if failed else value)

    def cond(self, text: str | None, loc: Loc) -> Any:
        if text is None:
            return None
        compiled = self.expr(text, loc)
        return compiled.evaluate

    # -- steps ----------------------------------------------------------------------------
    def auto_id(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}_{self.counter}"

    def register(self, step_id: str, loc: Loc) -> None:
        if step_id in self.ids:
            first = self.ids[step_id]
            where = ""
            if self.source:
                pos, _ = self.source.locate(first)
                where = f" (first defined at line {pos[0]})" if pos else ""
            self.issue(
                (*loc, "id"),
                f"duplicate step id {step_id!r}{where}",
                "step ids are unique in a workflow",
            )
        else:
            self.ids[step_id] = loc

    def steps(self, items: Sequence[Any], loc: Loc) -> list[Node]:
        return [self.node(s, (*loc, i)) for i, s in enumerate(items)]

    def common(self, step: Any, loc: Loc) -> dict[str, Any]:
        kw: dict[str, Any] = {"timeout": step.timeout, "when": self.cond(step.when, (*loc, "when"))}
        if step.fallback is not None:
            kw["fallback"] = self.leaf(step.fallback, (*loc, "fallback"), "fallback")
        if step.compensate is not None:
            kw["compensate"] = self.leaf(step.compensate, (*loc, "compensate"), "compensate")
        return kw

    def leaf(self, step: Any, loc: Loc, role: str, *, worker: bool = False) -> Node:
        return self.node(step, loc, role_id=step.id or role, worker=worker)

    def node(
        self, step: Any, loc: Loc, *, role_id: str | None = None, worker: bool = False
    ) -> Node:
        kind = spec.step_kind(step) or "step"
        if role_id is None:
            step_id = step.id or self.auto_id(kind.replace("if", "if_"))
            self.register(step_id, loc)
        else:
            step_id = role_id
        kw = self.common(step, loc)
        if step.retry is not None and kind not in ("call", "model", "workflow"):
            self.issue(
                (*loc, "retry"),
                f"retry applies to call, model and workflow steps, not {kind}",
                "put the retry on the steps inside",
            )
        if kind == "call":
            return self.call_node(step, step_id, loc, kw, worker)
        if kind == "model":
            return self.model_node(step, step_id, loc, kw)
        if kind == "workflow":
            return self.workflow_node(step, step_id, loc, kw)
        if kind == "review":
            return ReviewNode(
                step_id,
                self.expr(step.review, (*loc, "review")),
                self.expr(step.data, (*loc, "data")),
                step.on_reject,
                **kw,
            )
        if kind == "steps":
            return SequenceNode(step_id, self.steps(step.steps, (*loc, "steps")), **kw)
        if kind in ("parallel", "for_each"):
            return self.fan_out(step, step_id, loc, kw)
        if kind == "orchestrate":
            workers: dict[str, Node] = {}
            for name, w in step.workers.items():
                wloc = (*loc, "workers", name)
                workers[name] = self.node(w, wloc, role_id=name, worker=True)
                self.register(name, wloc)
            synth = (
                self.leaf(step.synthesize, (*loc, "synthesize"), "synthesize")
                if step.synthesize
                else None
            )
            return OrchestrateNode(
                step_id,
                self.leaf(step.orchestrate, (*loc, "orchestrate"), "orchestrate"),
                workers,
                synth,
                step.max_concurrency,
                step.max_tasks,
                **kw,
            )
        if kind == "saga":
            children = self.steps(step.saga, (*loc, "saga"))
            child_ids = {c.id for c in children}
            for i, keep in enumerate(step.on_failure.keep):
                if keep not in child_ids:
                    self.issue(
                        (*loc, "on_failure", "keep", i),
                        f"'keep' names {keep!r}, which is not a step of this saga",
                        "saga steps: " + ", ".join(sorted(child_ids)),
                    )
            degrade = self.steps(step.on_failure.then, (*loc, "on_failure", "then"))
            return SagaNode(step_id, children, step.on_failure.keep, degrade, **kw)
        if kind == "if":
            return IfNode(
                step_id,
                self.cond(step.if_, (*loc, "if")),
                self.steps(step.then, (*loc, "then")),
                self.steps(step.else_, (*loc, "else")),
                **kw,
            )
        if kind == "switch":
            return SwitchNode(
                step_id,
                self.cond(step.switch, (*loc, "switch")),
                {k: self.steps(v, (*loc, "cases", k)) for k, v in step.cases.items()},
                self.steps(step.default, (*loc, "default")),
                **kw,
            )
        if kind == "loop":
            return LoopNode(
                step_id,
                self.steps(step.loop, (*loc, "loop")),
                self.cond(step.until, (*loc, "until")),
                step.max_iterations,
                **kw,
            )
        raise AssertionError(kind)

    def call_node(
        self, step: spec.CallStep, step_id: str, loc: Loc, kw: dict[str, Any], worker: bool
    ) -> Node:
        fn: Any = step.call
        if isinstance(fn, str):
            try:
                fn = resolve_function(fn, self.registry, self.base_dir)
            except ResolveError as exc:
                self.issue((*loc, "call"), str(exc), exc.hint)
                fn = _unresolved
        label = step.call if isinstance(step.call, str) else _callable_name(fn)
        wants_ctx = False
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = None
        if params is not None and fn is not _unresolved:
            wants_ctx = "ctx" in params
            accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
            names = [
                n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            for key in step.input:
                if key not in names and not accepts_any:
                    near = difflib.get_close_matches(key, names, n=1)
                    self.issue(
                        (*loc, "input", key),
                        f"function {label!r} has no parameter {key!r}",
                        f"did you mean '{near[0]}'?"
                        if near
                        else "parameters: " + (", ".join(names) or "none"),
                    )
            if not (worker and not step.input):
                missing = [
                    n
                    for n, p in params.items()
                    if p.default is p.empty
                    and n != "ctx"
                    and n not in step.input
                    and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                ]
                if missing:
                    self.issue(
                        (*loc, "input"),
                        f"function {label!r} needs input " + ", ".join(repr(m) for m in missing),
                        "add them under 'input:'",
                    )
        return CallNode(
            step_id,
            fn,
            self.expr(step.input, (*loc, "input")),
            wants_ctx=wants_ctx,
            pass_task_input=worker and not step.input,
            retry=step.retry,
            **kw,
        )

    def model_node(self, step: spec.ModelStep, step_id: str, loc: Loc, kw: dict[str, Any]) -> Node:
        if step.messages is not None:
            if step.prompt is not None or step.system is not None:
                self.issue(
                    (*loc, "messages"), "give either 'messages' or 'prompt'/'system', not both"
                )
            messages = self.expr(step.messages, (*loc, "messages"))
        else:
            task_input = "input" in step.params or "image" in step.params
            if step.prompt is None and not task_input:
                self.issue(
                    (*loc, "model"),
                    "a model step needs 'prompt' or 'messages' (or, for a task model such as"
                    " OCR or a classifier, params.input or params.image)",
                )
            raw: list[dict[str, Any]] = []
            if step.system is not None:
                raw.append({"role": "system", "content": step.system})
            if step.prompt is not None or not task_input:
                raw.append({"role": "user", "content": step.prompt or ""})
            messages = self.expr(raw, (*loc, "prompt"))
        return ModelNode(
            step_id,
            step.model,
            messages,
            self.expr(step.params, (*loc, "params")),
            step.parse,
            fallbacks=tuple(step.fallbacks),
            retry=step.retry,
            **kw,
        )

    def workflow_node(
        self, step: spec.WorkflowStep, step_id: str, loc: Loc, kw: dict[str, Any]
    ) -> Node:
        target = step.workflow
        child: Plan | None = None
        try:
            if isinstance(target, spec.Workflow):
                child = plan(
                    target, registry=self.registry, base_dir=self.base_dir, _stack=self.stack
                )
            else:
                registered = self.registry.workflow(target)
                if isinstance(registered, Plan):
                    child = registered
                elif isinstance(registered, spec.Workflow):
                    child = plan(
                        registered,
                        registry=self.registry,
                        base_dir=self.base_dir,
                        _stack=self.stack,
                    )
                else:
                    path = Path(target)
                    if not path.is_absolute() and self.base_dir is not None:
                        path = self.base_dir / path
                    if not path.is_file():
                        self.issue(
                            (*loc, "workflow"),
                            f"no workflow file or registered workflow {target!r}",
                        )
                    elif str(path.resolve()) in self.stack:
                        self.issue(
                            (*loc, "workflow"),
                            f"workflow {target!r} includes itself",
                            " → ".join([*self.stack, str(path.resolve())]),
                        )
                    else:
                        child = load_workflow(path, registry=self.registry, _stack=self.stack)
        except DefinitionError as exc:
            self.issues.extend(exc.issues)
        if child is None:
            return SequenceNode(step_id, [], **kw)
        self.children.append(child)
        for key in step.input:
            if key not in child.workflow.inputs:
                self.issue(
                    (*loc, "input", key),
                    f"workflow {child.name!r} has no input {key!r}",
                    "inputs: " + (", ".join(child.workflow.inputs) or "none"),
                )
        return SubWorkflowNode(step_id, child, self.expr(step.input, (*loc, "input")), **kw)

    def fan_out(self, step: Any, step_id: str, loc: Loc, kw: dict[str, Any]) -> Node:
        custom = None
        agg = step.aggregate
        if callable(agg):
            custom, agg = agg, "custom"
        elif agg not in _AGGREGATES:
            if ":" in agg:
                try:
                    custom = resolve_function(agg, self.registry, self.base_dir)
                    agg = "custom"
                except ResolveError as exc:
                    self.issue((*loc, "aggregate"), str(exc), exc.hint)
            else:
                near = difflib.get_close_matches(agg, _AGGREGATES, n=1)
                self.issue(
                    (*loc, "aggregate"),
                    f"unknown aggregate {agg!r}",
                    f"did you mean '{near[0]}'?"
                    if near
                    else "use all, first, vote, weighted or 'package.module:function'",
                )
        if step.quorum is not None and step.failure != "quorum":
            self.issue((*loc, "quorum"), "'quorum' needs 'failure: quorum'")
        fan = dict(
            aggregate=agg,
            custom=custom,
            vote_on=self.cond(step.vote_on, (*loc, "vote_on")),
            score=self.cond(step.score, (*loc, "score")),
            weights=step.weights,
            failure=step.failure,
            quorum=step.quorum,
            max_concurrency=step.max_concurrency,
        )
        if isinstance(step, spec.ParallelStep):
            branches = self.steps(step.parallel, (*loc, "parallel"))
            ids = [b.id for b in branches]
            if step.quorum is not None and step.quorum > len(branches):
                self.issue(
                    (*loc, "quorum"), f"quorum {step.quorum} exceeds the {len(branches)} branches"
                )
            for name in step.weights:
                if name not in ids:
                    self.issue(
                        (*loc, "weights", name),
                        f"weight for unknown branch {name!r}",
                        "branches: " + ", ".join(ids),
                    )
            return ParallelNode(step_id, branches, **fan, **kw)
        items = self.cond(step.for_each, (*loc, "for_each"))
        body = self.steps(step.do, (*loc, "do"))
        return ForEachNode(step_id, items, body, step.max_items, **fan, **kw)

    # -- whole workflow -------------------------------------------------------------------
    def run(self) -> tuple[list[Node], Compiled | None]:
        root = self.steps(self.workflow.steps, ("steps",))
        output = (
            self.expr(self.workflow.output, ("output",))
            if self.workflow.output is not None
            else None
        )
        for ref, loc in self.step_refs:
            if ref not in self.ids:
                near = difflib.get_close_matches(ref, list(self.ids), n=1)
                self.issue(
                    loc,
                    f"expression reads steps.{ref}, but no step has id {ref!r}",
                    f"did you mean '{near[0]}'?"
                    if near
                    else "known steps: " + (", ".join(sorted(self.ids)) or "none"),
                )
        for ref, loc in self.input_refs:
            if ref not in self.workflow.inputs:
                near = difflib.get_close_matches(ref, list(self.workflow.inputs), n=1)
                self.issue(
                    loc,
                    f"expression reads inputs.{ref}, which is not declared",
                    f"did you mean '{near[0]}'?" if near else "declare it under 'inputs:'",
                )
        for name, inp in self.workflow.inputs.items():
            if "default" in inp.model_fields_set and inp.default is not None and inp.type != "any":
                try:
                    from pydantic import TypeAdapter

                    TypeAdapter(_TYPES[inp.type]).validate_python(
                        inp.default, strict=inp.type != "number"
                    )
                except ValidationError:
                    self.issue(
                        ("inputs", name, "default"),
                        f"default {inp.default!r} is not of type {inp.type}",
                    )
        return root, output


def _strings(value: Any, loc: Loc) -> Any:
    """Every string inside ``value``, with its path."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(item, (*loc, i))


async def _unresolved(**_: Any) -> None:  # placeholder for a function that failed to resolve
    raise AssertionError("unreachable: plans with issues are never run")


def plan(
    workflow: spec.Workflow,
    *,
    registry: Registry | None = None,
    source: Source | None = None,
    base_dir: Path | None = None,
    source_ref: str | None = None,
    _stack: tuple[str, ...] = (),
) -> Plan:
    """Check and compile a definition. Raises ``DefinitionError`` listing every issue."""
    registry = registry or Registry()
    planner = _Planner(workflow, source, registry, base_dir, _stack)
    root, output = planner.run()
    if planner.issues:
        raise DefinitionError(
            sorted(
                planner.issues,
                key=lambda i: (i.file != planner.file, i.line or 0, i.column or 0),
            )
        )
    if source is not None:
        text = source.text
        digest = hashlib.sha256(text.encode()).hexdigest()
    else:
        text = f"python:{source_ref}" if source_ref else ""
        digest = definition_hash(workflow)
    return Plan(
        workflow=workflow,
        root=root,
        output=output,
        input_model=_input_model(workflow),
        source=text,
        source_hash=digest,
        file=source.file if source else None,
        children=planner.children,
    )


def load_text(
    text: str,
    file: str = "<string>",
    *,
    registry: Registry | None = None,
    base_dir: Path | None = None,
    _stack: tuple[str, ...] = (),
) -> Plan:
    """Parse, validate and plan YAML text."""
    source = parse_yaml(text, file)
    workflow = validate_source(source)
    return plan(workflow, registry=registry, source=source, base_dir=base_dir, _stack=_stack)


def load_workflow(
    path: str | Path, *, registry: Registry | None = None, _stack: tuple[str, ...] = ()
) -> Plan:
    """Parse, validate and plan a YAML workflow file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DefinitionError([DefinitionIssue("no such file", str(path))]) from None
    except UnicodeDecodeError as exc:
        raise DefinitionError(
            [DefinitionIssue(f"not UTF-8 text: {exc.reason}", str(path))]
        ) from None
    resolved = str(path.resolve())
    loaded = load_text(
        text,
        str(path),
        registry=registry,
        base_dir=path.resolve().parent,
        _stack=(*_stack, resolved),
    )
    loaded.location = resolved
    return loaded
