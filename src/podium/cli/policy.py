"""``podium policy``: validate a policy file and explain its decisions.

``podium policy check FILE`` prints the policy's id, version hash and rules, or every problem as
``file:line:col: key.path: message (hint)`` and exits 1. ``podium policy explain FILE --team T
--model M`` prints what the policy decides for one caller and model (and, with ``--provider``,
for one deployment), the rule that decided, and how every rule judged the request; it exits 0
when the call is allowed and 3 when it is refused, so CI can assert a decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from podium.gateway.config_yaml import format_issue
from podium.governance.policy import Policy, PolicyFileError, Subject

__all__ = ["DENIED_EXIT", "INVALID_EXIT", "policy_app"]

policy_app = typer.Typer(
    help="The central policy: validate a file, explain a decision.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

INVALID_EXIT = 1
"""Exit status of a policy file that does not validate (or cannot be read)."""
DENIED_EXIT = 3
"""Exit status of ``explain`` when the policy refuses the call."""

PolicyFile = Annotated[Path, typer.Argument(help="The policy YAML file.")]


def _load(file: Path) -> Policy:
    try:
        return Policy.load(file)
    except PolicyFileError as exc:
        n = len(exc.issues)
        err.print(f"[bold red]invalid policy[/]: {n} problem{'s' if n != 1 else ''}")
        for issue in exc.issues:
            err.print(Text(format_issue(issue), style="red"), highlight=False, soft_wrap=True)
        raise typer.Exit(INVALID_EXIT) from None


def _list(values: tuple[str, ...] | None) -> str:
    return ", ".join(values) if values else "*"


@policy_app.command()
def check(file: PolicyFile) -> None:
    """Validate a policy file; print its id, version and rules (exit 1 on any problem)."""
    policy = _load(file)
    spec = policy.spec
    revision = f", revision {policy.revision}" if policy.revision is not None else ""
    console.print(
        f"[green]✔[/] {escape(str(file))}: policy [bold]{escape(policy.id)}[/] "
        f"version [bold]{policy.version}[/]{revision}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"sha256 {policy.sha256}", highlight=False, soft_wrap=True)
    console.print(
        f"models no rule allows: [bold]{spec.default}[/]; default data class: "
        f"[bold]{escape(policy.default_classification)}[/]",
        highlight=False,
    )

    rules = Table(title="Rules (file order; every deny is checked before any allow)")
    rules.add_column("#")
    rules.add_column("id", no_wrap=True, min_width=max((len(r.id) for r in spec.rules), default=2))
    for col in ("effect", "when", "models", "providers", "destinations"):
        rules.add_column(col, overflow="fold")
    for n, r in enumerate(spec.rules, 1):
        for effect, targets in (("deny", r.deny), ("allow", r.allow)):
            if targets is None:
                continue
            when = r.when.fields() if r.when is not None else {}
            rules.add_row(
                str(n),
                r.id,
                Text(effect, style="red" if effect == "deny" else "green"),
                " ".join(f"{k}={','.join(v)}" for k, v in when.items()) or "everyone",
                _list(targets.models),
                _list(targets.providers),
                _list(targets.destinations),
            )
    console.print(rules)

    classes = Table(title="Data classes")
    for col in ("class", "destinations", "PII → local", "PII → hosted"):
        classes.add_column(col, overflow="fold")
    for name, destinations in policy.classifications.items():
        actions = policy.pii_actions(name)
        label = f"{name} (default)" if name == policy.default_classification else name
        classes.add_row(
            label,
            ", ".join(sorted(destinations)),
            actions["local"],
            actions["hosted"],
        )
    console.print(classes)
    pii = spec.pii
    console.print(
        f"PII: {', '.join(pii.entities)}; restore in answers: {'yes' if pii.restore else 'no'}",
        highlight=False,
    )

    if spec.ceilings:
        ceilings = Table(title="Ceilings (the first that matches applies)")
        ceilings.add_column("id", no_wrap=True, min_width=max(len(c.id) for c in spec.ceilings))
        for col in ("when", "models", "max output tokens", "max cost per call"):
            ceilings.add_column(col, overflow="fold")
        for c in spec.ceilings:
            when = c.when.fields() if c.when is not None else {}
            ceilings.add_row(
                c.id,
                " ".join(f"{k}={','.join(v)}" for k, v in when.items()) or "everyone",
                _list(c.models),
                str(c.max_output_tokens) if c.max_output_tokens is not None else "-",
                f"${c.max_cost_per_call}" if c.max_cost_per_call is not None else "-",
            )
        console.print(ceilings)
    if policy.retention:
        retention = Table(title="Retention (the shortest matching period applies)")
        retention.add_column("id", no_wrap=True, min_width=max(len(r.id) for r in policy.retention))
        for col in ("when", "classes", "days"):
            retention.add_column(col, overflow="fold")
        for rule in policy.retention:
            retention.add_row(
                rule.id, rule.who.describe(), _list(rule.classifications), str(rule.days)
            )
        console.print(retention)


@policy_app.command()
def explain(
    file: PolicyFile,
    model: Annotated[str, typer.Option(help="The model or group asked for.")],
    team: Annotated[str | None, typer.Option(help="The caller's team.")] = None,
    project: Annotated[str | None, typer.Option(help="The caller's project.")] = None,
    classification: Annotated[
        str | None, typer.Option(help="The request's data class (default: the policy's).")
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(help="Judge one deployment: the provider serving the model (local: local)."),
    ] = None,
    org: Annotated[str | None, typer.Option(help="The caller's organisation.")] = None,
    use_case: Annotated[str | None, typer.Option(help="The caller's use case.")] = None,
    key: Annotated[str | None, typer.Option(help="The caller's API key id.")] = None,
) -> None:
    """Show what the policy decides for a caller and a model, and the rule that decided.

    Exit status: 0 allowed, 3 denied, 1 invalid file.
    """
    policy = _load(file)
    subject = Subject(org=org, team=team, project=project, use_case=use_case, key_id=key)
    decision = policy.decide(subject, model, classification=classification)
    allowed, rule_id, reason = decision.allowed, decision.rule_id, decision.reason
    if allowed and provider is not None:
        local = provider == "local"
        if not policy.destination_allowed(decision, local=local):
            where = "local" if local else "hosted"
            allowed, rule_id = False, "classification"
            reason = (
                f"policy {policy.id} ({policy.version}): {decision.classification} data may not "
                f"go to {where} models"
            )
        else:
            allowed, rule_id, short = policy.permits(subject, model, provider)
            label = "" if rule_id.startswith("default-") else f" rule {rule_id}"
            reason = f"policy {policy.id} ({policy.version}){label}: {short}"

    verdict = Text("ALLOWED", style="bold green") if allowed else Text("DENIED", style="bold red")
    console.print(verdict, Text(f"by rule {rule_id}"), highlight=False)
    console.print(reason, highlight=False, soft_wrap=True, markup=False)
    ceiling = (
        "none"
        if decision.ceiling_id is None
        else f"{decision.ceiling_id} (max output tokens: {decision.max_output_tokens or '-'}, "
        f"max cost per call: "
        f"{'$' + str(decision.max_cost_per_call) if decision.max_cost_per_call else '-'})"
    )
    actions = ", ".join(f"{d} {a}" for d, a in sorted(decision.pii_action.items()))
    console.print(
        f"data class: {decision.classification} → "
        f"{', '.join(sorted(decision.destinations)) or 'nowhere'}\n"
        f"PII: {actions}; restore: {'yes' if decision.pii_restore else 'no'}\n"
        f"ceiling: {ceiling}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    trace = Table(title="How each rule judged (denies first)")
    traced = policy.trace(subject, model, provider)
    trace.add_column(
        "rule", no_wrap=True, min_width=max((len(t.rule_id) for t in traced), default=4)
    )
    for col in ("effect", "selects caller", "matches model", "decided"):
        trace.add_column(col, overflow="fold")
    for t in traced:
        trace.add_row(
            t.rule_id,
            t.effect,
            "yes" if t.selects else "no",
            "yes" if t.targets else "no",
            Text("◀", style="bold") if t.decided and t.rule_id == rule_id else "",
        )
    console.print(trace)
    raise typer.Exit(0 if allowed else DENIED_EXIT)
