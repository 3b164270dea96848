"""Mermaid flowcharts of workflow definitions (``podium diagram``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from podium.workflows import spec

_SAFE = re.compile(r"[^A-Za-z0-9_]")


class _Drawer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.n = 0

    def node_id(self, hint: str) -> str:
        self.n += 1
        return f"n{self.n}_{_SAFE.sub('_', hint)[:30]}"

    def label(self, text: str) -> str:
        return text.replace('"', "'")

    def box(self, hint: str, text: str, shape: str = "rect") -> str:
        nid = self.node_id(hint)
        text = self.label(text)
        if shape == "diamond":
            self.lines.append(f'  {nid}{{"{text}"}}')
        elif shape == "round":
            self.lines.append(f'  {nid}(["{text}"])')
        elif shape == "hex":
            self.lines.append(f'  {nid}{{{{"{text}"}}}}')
        else:
            self.lines.append(f'  {nid}["{text}"]')
        return nid

    def edge(self, a: str, b: str, label: str | None = None, dashed: bool = False) -> None:
        arrow = "-.->" if dashed else "-->"
        if label:
            self.lines.append(f"  {a} {arrow}|{self.label(label)}| {b}")
        else:
            self.lines.append(f"  {a} {arrow} {b}")

    def seq(self, steps: Sequence[Any], entry: str) -> str:
        last = entry
        for step in steps:
            first, end = self.step(step)
            self.edge(last, first)
            last = end
        return last

    def step(self, step: Any) -> tuple[str, str]:
        kind = spec.step_kind(step) or "step"
        name = step.id or kind
        if kind == "call":
            ref = step.call if isinstance(step.call, str) else getattr(step.call, "__name__", "fn")
            n = self.box(name, f"{name}<br/><small>{ref}</small>")
            return self._extras(step, n, n)
        if kind == "model":
            n = self.box(name, f"{name}<br/><small>model: {step.model}</small>", "round")
            return self._extras(step, n, n)
        if kind == "workflow":
            target = step.workflow if isinstance(step.workflow, str) else step.workflow.name
            n = self.box(name, f"{name}<br/><small>workflow: {target}</small>")
            return n, n
        if kind == "review":
            n = self.box(name, f"👤 {name}<br/><small>human review</small>", "hex")
            return n, n
        if kind == "steps":
            start = self.box(name, name, "round")
            return start, self.seq(step.steps, start)
        if kind in ("parallel", "for_each"):
            label = f"{name}: for each" if kind == "for_each" else f"{name}: parallel"
            fork = self.box(name, label, "diamond")
            join = self.box(
                name + "_join",
                f"aggregate: {step.aggregate if isinstance(step.aggregate, str) else 'custom'}",
                "round",
            )
            branches = (
                step.parallel
                if kind == "parallel"
                else [spec.SequenceStep(id="item", steps=step.do)]
            )
            for b in branches:
                first, end = self.step(b)
                self.edge(fork, first)
                self.edge(end, join)
            return fork, join
        if kind == "orchestrate":
            planner, _ = self.step(step.orchestrate)
            synth = self.box(name + "_synth", "synthesize", "round")
            for wname, worker in step.workers.items():
                first, end = self.step(worker)
                self.edge(planner, first, f"task → {wname}", dashed=True)
                self.edge(end, synth)
            if step.synthesize is not None:
                s_first, s_end = self.step(step.synthesize)
                self.edge(synth, s_first)
                return planner, s_end
            return planner, synth
        if kind == "saga":
            start = self.box(name, f"saga: {name}", "round")
            end = self.seq(step.saga, start)
            if step.on_failure.then:
                fail = self.box(name + "_fail", "on failure: compensate, then degrade", "diamond")
                self.edge(start, fail, "failure", dashed=True)
                self.seq(step.on_failure.then, fail)
            return start, end
        if kind in ("if", "switch"):
            cond = step.if_ if kind == "if" else step.switch
            test = self.box(name, f"{name}: {cond}", "diamond")
            join = self.box(name + "_join", "merge", "round")
            cases = (
                {"then": step.then, "else": step.else_}
                if kind == "if"
                else {**step.cases, "default": step.default}
            )
            for label, body in cases.items():
                if body:
                    first, end = self.step(spec.SequenceStep(id=f"{name}_{label}", steps=body))
                    self.edge(test, first, label)
                    self.edge(end, join)
                else:
                    self.edge(test, join, label)
            return test, join
        if kind == "loop":
            start = self.box(name, f"loop: {name} (≤ {step.max_iterations})", "round")
            end = self.seq(step.loop, start)
            check = self.box(name + "_until", f"until {step.until}", "diamond")
            self.edge(end, check)
            self.edge(check, start, "again", dashed=True)
            return start, check
        n = self.box(name, name)
        return n, n

    def _extras(self, step: Any, first: str, last: str) -> tuple[str, str]:
        if step.fallback is not None:
            fb, _ = self.step(step.fallback)
            self.edge(first, fb, "fallback", dashed=True)
        if step.compensate is not None:
            comp, _ = self.step(step.compensate)
            self.edge(first, comp, "compensate", dashed=True)
        return first, last


def to_mermaid(workflow: spec.Workflow) -> str:
    """A Mermaid ``flowchart TD`` of the definition."""
    d = _Drawer()
    start = d.box("start", f"{workflow.name}: start", "round")
    end = d.seq(workflow.steps, start)
    stop = d.box("end", "end", "round")
    d.edge(end, stop)
    return "flowchart TD\n" + "\n".join(d.lines) + "\n"
