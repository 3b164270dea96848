"""The central policy engine: the file format and its located errors, the evaluation order,
selectors, data classes, ceilings, PII actions, versions, the built-in default and retention."""

from __future__ import annotations

import textwrap
import timeit
from decimal import Decimal
from pathlib import Path

import pytest

from podium.errors import ConfigError, PodiumError
from podium.governance.pii.entities import Entity
from podium.governance.policy import (
    MEMO_SIZE,
    PII_ENTITIES,
    Policy,
    PolicyDenied,
    PolicyFileError,
    Subject,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "governance" / "policy.yaml"

ACME = """
policy: acme            # id
revision: 3
default: deny
classifications:
  default: internal
  public:       {destinations: [local, hosted]}
  internal:     {destinations: [local, hosted]}
  confidential: {destinations: [local]}
  restricted:   {destinations: [local], pii: block}
rules:
  - id: everyone-local
    allow: {models: ["local/*"]}
  - id: eng-hosted
    when: {teams: [eng, support], projects: ["*"]}
    allow: {providers: [openai, anthropic], models: ["openai/gpt-4o*", "anthropic/claude-3-5-*"]}
  - id: interns-no-premium
    when: {teams: [interns]}
    deny: {models: ["openai/gpt-4o", "anthropic/*opus*"]}
ceilings:
  - id: support-small-calls
    when: {teams: [support]}
    max_output_tokens: 1024
    max_cost_per_call: 0.05
pii:
  entities: [EMAIL, PHONE, CREDIT_CARD, IBAN, NATIONAL_ID, IP_ADDRESS, PERSON, LOCATION]
  hosted: redact
  local: allow
  restore: true
retention:
  - id: confidential-30d
    when: {teams: ["*"]}
    classifications: [confidential, restricted]
    days: 30
  - id: default-1y
    days: 365
"""


def policy(text: str, source: str = "policy.yaml") -> Policy:
    return Policy.parse(textwrap.dedent(text), source=source)


def problems(text: str) -> list[tuple[int | None, int | None, str | None, str]]:
    with pytest.raises(PolicyFileError) as caught:
        policy(text)
    return [(i.line, i.column, i.key, i.message) for i in caught.value.issues]


@pytest.fixture(scope="module")
def acme() -> Policy:
    return policy(ACME)


# -- the file ----------------------------------------------------------------------------------


def test_the_example_policy_is_valid() -> None:
    p = Policy.load(EXAMPLE)
    assert (p.id, p.revision, p.source) == ("acme", 7, str(EXAMPLE))
    assert p.version.startswith("sha256:")
    assert len(p.version) == len("sha256:") + 12
    assert p.sha256.startswith(p.version.removeprefix("sha256:"))
    assert len(p.sha256) == 64
    intern = Subject(team="interns")
    assert p.decide(intern, "openai/o3").rule_id == "interns-no-premium"
    assert p.decide(Subject(key_id="contractor-7"), "local/smollm2-135m-instruct").allowed
    assert not p.permits(Subject(key_id="contractor-7"), "openai/gpt-4o-mini", "openai")[0]


def test_format_errors_are_all_located_with_did_you_mean(tmp_path: Path) -> None:
    bad = """\
        policy: acme
        default: dney
        classifications:
          defualt: internal
          public: {destinations: []}
          internal: {destinatons: [local]}
          secret: {destinations: [cloud], pii: blok}
        rules:
          - id: a
            when: {teams: []}
            allow: {models: ["x"]}
          - id: b
          - id: c
            when: {temas: [x]}
            deny: {}
        ceilings:
          - id: d
            max_cost_per_call: "abc"
          - id: e
            max_cost_per_call: -1
          - id: f
            max_output_tokens: 0
          - id: g
            when: {teams: [x]}
        pii:
          entities: [EMAIL, EMIAL]
          hosted: redakt
        retention:
          - id: r
            days: 0
        """
    file = tmp_path / "bad.yaml"
    file.write_text(textwrap.dedent(bad))
    with pytest.raises(PolicyFileError) as caught:
        Policy.load(file)
    error = caught.value
    assert isinstance(error, ConfigError)
    assert all(i.file == str(file) for i in error.issues)
    located = [(i.line, i.column, i.key) for i in error.issues]
    assert located == [
        (2, 1, "default"),
        (4, 3, "classifications.defualt"),
        (5, 12, "classifications.public.destinations"),
        (6, 14, "classifications.internal.destinatons"),
        (7, 27, "classifications.secret.destinations.0"),
        (7, 35, "classifications.secret.pii"),
        (10, 12, "rules.0.when.teams"),
        (12, 5, "rules.1"),
        (14, 12, "rules.2.when.temas"),
        (15, 5, "rules.2.deny"),
        (18, 5, "ceilings.0.max_cost_per_call"),
        (20, 5, "ceilings.1.max_cost_per_call"),
        (22, 5, "ceilings.2.max_output_tokens"),
        (23, 5, "ceilings.3"),
        (26, 21, "pii.entities.1"),
        (27, 3, "pii.hosted"),
        (30, 5, "retention.0.days"),
    ]
    text = str(error).splitlines()
    assert text[0] == (
        f"{file}:2:1: default: expected 'deny' or 'allow', got 'dney' (did you mean 'deny'?)"
    )
    hints = {i.key: i.hint for i in error.issues}
    assert hints["classifications.defualt"] == "did you mean 'default'?"
    assert hints["classifications.internal.destinatons"] == "did you mean 'destinations'?"
    assert hints["classifications.secret.pii"] == "did you mean 'block'?"
    assert hints["rules.2.when.temas"] == "did you mean 'teams'?"
    assert hints["pii.entities.1"] == "did you mean 'EMAIL'?"
    assert hints["pii.hosted"] == "did you mean 'redact'?"
    messages = {i.key: i.message for i in error.issues}
    assert messages["classifications.public.destinations"] == (
        "a data class needs at least one destination"
    )
    assert messages["rules.1"] == "rule 'b' neither allows nor denies anything"
    assert messages["ceilings.0.max_cost_per_call"] == "'abc' is not a decimal amount"
    assert messages["ceilings.3"] == "ceiling 'g' limits nothing"
    assert messages["classifications.secret.destinations.0"] == (
        "expected 'local' or 'hosted', got 'cloud'"
    )


def test_checks_across_sections_name_the_first_use() -> None:
    found = problems(
        """\
        policy: acme
        classifications:
          default: secret
          public: {destinations: [local, hosted]}
        rules:
          - id: a
            allow: {models: ["x"]}
          - id: a
            deny: {models: ["y"]}
        ceilings:
          - id: default-deny
            max_output_tokens: 5
        retention:
          - id: a
            classifications: [publc]
            days: 3
        """
    )
    assert found == [
        (3, 3, "classifications.default", "the default class 'secret' is not declared"),
        (8, 5, "rules.1.id", "id 'a' is already used (first at line 6)"),
        (11, 5, "ceilings.0.id", "'default-deny' is reserved for decisions no rule made"),
        (14, 5, "retention.0.id", "id 'a' is already used (first at line 6)"),
        (15, 23, "retention.0.classifications.0", "unknown class 'publc'"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("", 1, 1, "the file is empty"),
        ("# only a comment\n", 1, 1, "the file holds only comments"),
        ("- a\n- b\n", 1, 1, "a policy file must be a mapping of sections (policy, rules, …)"),
        (
            "policy: [unclosed\n",
            2,
            1,
            "YAML syntax error: expected ',' or ']', but got '<stream end>'",
        ),
        ("rules: []\n", 1, 1, "missing required key 'policy'"),
        ("policy: a b\n", 1, 1, "'a b' is not a valid policy"),
        (
            "policy: a\nclassifications: {default: x, Bad: {destinations: [local]}}\n",
            2,
            31,
            "'Bad' is not a valid class name",
        ),
    ],
)
def test_yaml_level_problems_are_located(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(PolicyFileError) as caught:
        Policy.parse(text, source="p.yaml")
    (issue,) = caught.value.issues
    assert (issue.file, issue.line, issue.column, issue.message) == (
        "p.yaml",
        line,
        column,
        message,
    )


def test_a_missing_file_is_a_policy_file_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="cannot read the policy"):
        Policy.load(tmp_path / "nope.yaml")


def test_the_pii_entity_list_is_the_detectors() -> None:
    assert set(PII_ENTITIES) == {e.value for e in Entity}
    assert len(PII_ENTITIES) == 8


# -- evaluation order --------------------------------------------------------------------------


def test_models_no_rule_allows_are_denied_by_default(acme: Policy) -> None:
    d = acme.decide(Subject(team="marketing"), "openai/gpt-4o-mini")
    assert not d.allowed
    assert d.rule_id == "default-deny"
    assert d.reason == (
        f"policy acme ({acme.version}): no rule allows team marketing the model "
        "openai/gpt-4o-mini (deny by default)"
    )
    assert acme.decide(Subject(team="marketing"), "local/smollm2").rule_id == "everyone-local"


def test_an_explicit_default_allow_admits_the_rest() -> None:
    p = policy(
        """\
        policy: open
        default: allow
        rules:
          - id: no-opus
            deny: {models: ["*opus*"]}
        """
    )
    assert p.decide(Subject(), "openai/gpt-4o").rule_id == "default-allow"
    assert p.decide(Subject(), "openai/gpt-4o").allowed
    assert not p.decide(Subject(), "anthropic/claude-opus-4-6").allowed


def test_a_deny_beats_every_allow_wherever_it_is_written() -> None:
    p = policy(
        """\
        policy: order
        rules:
          - id: anything
            allow: {models: ["*"]}
          - id: interns-anything
            when: {teams: [interns]}
            allow: {models: ["openai/*"]}
          - id: interns-no-gpt4o
            when: {teams: [interns]}
            deny: {models: ["openai/gpt-4o"]}
        """
    )
    intern = Subject(team="interns")
    denied = p.decide(intern, "openai/gpt-4o")
    assert (denied.allowed, denied.rule_id) == (False, "interns-no-gpt4o")
    assert denied.reason == (
        f"policy order ({p.version}) rule interns-no-gpt4o denies team interns the model "
        "openai/gpt-4o"
    )
    # The first allow in file order decides among allows.
    assert p.decide(intern, "openai/gpt-4o-mini").rule_id == "anything"
    assert p.decide(Subject(team="eng"), "openai/gpt-4o").rule_id == "anything"


def test_a_rule_may_allow_and_deny(acme: Policy) -> None:
    p = policy(
        """\
        policy: both
        rules:
          - id: openai-but-o1
            allow: {providers: [openai]}
            deny: {models: ["openai/o1*"]}
        """
    )
    assert p.decide(Subject(), "openai/gpt-4o").rule_id == "openai-but-o1"
    assert p.decide(Subject(), "openai/gpt-4o").allowed
    o1 = p.decide(Subject(), "openai/o1-mini")
    assert (o1.allowed, o1.rule_id) == (False, "openai-but-o1")
    traced = [(t.rule_id, t.effect, t.decided) for t in p.trace(Subject(), "openai/o1-mini")]
    assert traced == [("openai-but-o1", "deny", True), ("openai-but-o1", "allow", False)]


# -- selectors ---------------------------------------------------------------------------------

SELECTORS = """\
policy: sel
rules:
  - id: eng-any-project
    when: {teams: ["eng*"], projects: ["*"]}
    allow: {models: [m1]}
  - id: eng-search
    when: {teams: [eng], projects: [search, "ads-?"]}
    allow: {models: [m2]}
  - id: acme-research
    when: {orgs: [acme], use_cases: [research]}
    allow: {models: [m3]}
  - id: ci-keys
    when: {keys: ["ci-*"]}
    allow: {models: [m4]}
"""


@pytest.mark.parametrize(
    ("subject", "model", "rule"),
    [
        (Subject(team="eng"), "m1", "eng-any-project"),
        (Subject(team="eng-platform", project="x"), "m1", "eng-any-project"),
        (Subject(team="Eng"), "m1", "default-deny"),  # globs are case-sensitive
        (Subject(team=None), "m1", "default-deny"),  # a missing team matches only '*'
        (Subject(team="eng", project="search"), "m2", "eng-search"),
        (Subject(team="eng", project="ads-1"), "m2", "eng-search"),
        (Subject(team="eng", project="ads-12"), "m2", "default-deny"),
        (Subject(team="eng"), "m2", "default-deny"),  # no project: only '*' selects it
        (Subject(team="eng-x", project="search"), "m2", "default-deny"),
        (Subject(org="acme", use_case="research"), "m3", "acme-research"),
        (Subject(org="acme"), "m3", "default-deny"),  # every selector must match
        (Subject(key_id="ci-nightly"), "m4", "ci-keys"),
        (Subject(key_id="cli"), "m4", "default-deny"),
    ],
)
def test_selectors(subject: Subject, model: str, rule: str) -> None:
    p = policy(SELECTORS)
    d = p.decide(subject, model)
    assert d.rule_id == rule
    assert d.allowed is (rule != "default-deny")


def test_providers_are_the_model_prefix_or_the_deployments(acme: Policy) -> None:
    eng = Subject(team="eng", project="search")
    assert acme.decide(eng, "openai/gpt-4o-mini").rule_id == "eng-hosted"
    assert acme.permits(eng, "openai/gpt-4o-mini", "openai") == (
        True,
        "eng-hosted",
        "allows team eng in project search the model openai/gpt-4o-mini through openai",
    )
    # The same model through a provider the rule does not name.
    allowed, rule, reason = acme.permits(eng, "openai/gpt-4o-mini", "azure")
    assert (allowed, rule) == (False, "default-deny")
    assert "through azure" in reason
    # A group's name has no provider: provider-only rules do not match it at admission.
    assert acme.decide(eng, "chat").rule_id == "default-deny"


def test_destination_targets_judge_deployments_not_group_names() -> None:
    p = policy(
        """\
        policy: dest
        rules:
          - id: contractors-local-only
            when: {keys: ["contractor-*"]}
            deny: {destinations: [hosted]}
          - id: anything
            allow: {models: ["*"]}
        """
    )
    c = Subject(key_id="contractor-1")
    assert p.decide(c, "openai/gpt-4o").rule_id == "contractors-local-only"
    assert p.decide(c, "local/smollm2").rule_id == "anything"
    assert p.decide(c, "chat").allowed  # the group: judged per deployment
    assert p.permits(c, "openai/gpt-4o", "openai")[:2] == (False, "contractors-local-only")
    assert p.permits(c, "local/smollm2", "local")[:2] == (True, "anything")


# -- data classes ------------------------------------------------------------------------------


def test_classifications_give_destinations(acme: Policy) -> None:
    eng = Subject(team="eng")
    d = acme.decide(eng, "local/smollm2")
    assert d.classification == "internal"  # the default class
    assert d.destinations == frozenset({"local", "hosted"})
    conf = acme.decide(eng, "local/smollm2", classification="confidential")
    assert conf.allowed
    assert conf.destinations == frozenset({"local"})
    assert acme.destination_allowed(conf, local=True)
    assert not acme.destination_allowed(conf, local=False)
    assert acme.destination_allowed(d, local=False)
    assert acme.classifications["restricted"] == frozenset({"local"})


def test_an_undeclared_classification_is_refused(acme: Policy) -> None:
    d = acme.decide(Subject(team="eng"), "local/smollm2", classification="top-secret")
    assert not d.allowed
    assert d.rule_id == "unknown-classification"
    assert d.destinations == frozenset()
    assert "'top-secret'" in d.reason
    assert "public, internal, confidential, restricted" in d.reason


def test_without_a_classifications_section_the_four_classes_apply() -> None:
    p = policy("policy: bare\n")
    assert dict(p.classifications) == {
        "public": frozenset({"local", "hosted"}),
        "internal": frozenset({"local", "hosted"}),
        "confidential": frozenset({"local"}),
        "restricted": frozenset({"local"}),
    }
    assert p.default_classification == "internal"
    assert p.pii_actions("restricted") == {"local": "block", "hosted": "block"}


# -- ceilings ----------------------------------------------------------------------------------


def test_ceilings_are_exact_decimals_and_the_first_match_applies() -> None:
    p = policy(
        """\
        policy: caps
        default: allow
        ceilings:
          - id: support-small
            when: {teams: [support]}
            max_output_tokens: 1024
            max_cost_per_call: 0.1
          - id: reasoning
            models: ["openai/o*"]
            max_cost_per_call: "2.50"
          - id: everyone
            max_output_tokens: 4096
        """
    )
    support = p.decide(Subject(team="support"), "openai/o3")
    assert support.ceiling_id == "support-small"
    assert support.max_output_tokens == 1024
    assert support.max_cost_per_call == Decimal("0.1")
    assert str(support.max_cost_per_call) == "0.1"  # read from the text, not via a float
    eng = p.decide(Subject(team="eng"), "openai/o3")
    assert (eng.ceiling_id, eng.max_cost_per_call, eng.max_output_tokens) == (
        "reasoning",
        Decimal("2.50"),
        None,
    )
    other = p.decide(Subject(team="eng"), "openai/gpt-4o")
    assert (other.ceiling_id, other.max_output_tokens, other.max_cost_per_call) == (
        "everyone",
        4096,
        None,
    )


def test_no_ceiling_means_no_limits(acme: Policy) -> None:
    d = acme.decide(Subject(team="eng"), "local/x")
    assert (d.ceiling_id, d.max_output_tokens, d.max_cost_per_call) == (None, None, None)
    assert acme.decide(Subject(team="support"), "local/x").max_cost_per_call == Decimal("0.05")


# -- PII ---------------------------------------------------------------------------------------


def test_pii_actions_per_destination_and_class() -> None:
    p = policy(
        """\
        policy: pii
        classifications:
          default: internal
          internal: {destinations: [local, hosted]}
          hr: {destinations: [local, hosted], pii: {hosted: block}}
          restricted: {destinations: [local], pii: block}
        pii:
          entities: [EMAIL, PHONE]
          hosted: redact
          local: allow
          restore: false
        """
    )
    d = p.decide(Subject(), "x")
    assert dict(d.pii_action) == {"local": "allow", "hosted": "redact"}
    assert d.pii_entities == ("EMAIL", "PHONE")
    assert d.pii_restore is False
    assert dict(p.decide(Subject(), "x", classification="hr").pii_action) == {
        "local": "allow",
        "hosted": "block",
    }
    assert dict(p.decide(Subject(), "x", classification="restricted").pii_action) == {
        "local": "block",
        "hosted": "block",
    }
    with pytest.raises(TypeError):
        d.pii_action["hosted"] = "allow"  # type: ignore[index]


# -- versions ----------------------------------------------------------------------------------


def test_the_version_ignores_key_order_whitespace_comments_and_spelled_out_defaults() -> None:
    a = policy(
        """\
        policy: v
        rules:
          - id: r1
            when: {teams: [eng]}
            allow: {models: ["openai/*"], providers: [openai]}
        ceilings:
          - {id: c, max_cost_per_call: "0.05"}
        """
    )
    b = policy(
        """\
        # a comment
        ceilings:
          - id: c
            max_cost_per_call:   "0.05"     # same amount
        rules:
          - allow:
              providers: [openai]
              models:
                - "openai/*"
            when:
              teams: [eng]
            id: r1
        default: deny          # the default, spelled out
        policy: v
        pii: {restore: true}
        """
    )
    assert a.version == b.version
    assert a.sha256 == b.sha256
    changed = policy(
        """\
        policy: v
        rules:
          - id: r1
            when: {teams: [eng, support]}
            allow: {models: ["openai/*"], providers: [openai]}
        ceilings:
          - {id: c, max_cost_per_call: "0.05"}
        """
    )
    assert changed.version != a.version
    cheaper = policy(
        """\
        policy: v
        rules:
          - id: r1
            when: {teams: [eng]}
            allow: {models: ["openai/*"], providers: [openai]}
        ceilings:
          - {id: c, max_cost_per_call: "0.04"}
        """
    )
    assert cheaper.version != a.version
    d = a.decide(Subject(team="eng"), "openai/gpt-4o")
    assert d.policy_version == a.version
    assert d.reason.startswith(f"policy v ({a.version}) rule r1 ")


def test_the_version_is_stable_across_processes(acme: Policy) -> None:
    # The hash of the canonical content is fixed: a policy never silently changes version.
    assert acme.version == policy(ACME, source="elsewhere.yaml").version
    assert acme.version == Policy.parse(ACME).version


# -- the built-in default ----------------------------------------------------------------------


def test_the_default_policy() -> None:
    p = Policy.default()
    assert (p.id, p.source) == ("podium-default", "<built-in>")
    anyone = Subject()
    d = p.decide(anyone, "openai/gpt-4o")
    assert d.allowed
    assert d.rule_id == "allow-all"
    assert d.classification == "internal"
    assert dict(d.pii_action) == {"local": "allow", "hosted": "redact"}
    assert d.pii_restore is True
    assert d.pii_entities == PII_ENTITIES[:6]  # names are opt-in (NER costs ~6 ms)
    conf = p.decide(anyone, "openai/gpt-4o", classification="confidential")
    assert conf.destinations == frozenset({"local"})
    assert not p.destination_allowed(conf, local=False)
    restricted = p.decide(anyone, "local/x", classification="restricted")
    assert restricted.pii_action["local"] == "block"
    assert p.permits(anyone, "anthropic/claude-sonnet-4-6", "anthropic")[0]
    assert p.retention_days("eng", "confidential") is None
    assert Policy.default().version == p.version


# -- errors, memo, speed -----------------------------------------------------------------------


def test_policy_denied_carries_the_rule(acme: Policy) -> None:
    d = acme.decide(Subject(team="interns"), "openai/gpt-4o")
    error = PolicyDenied.from_decision(d)
    assert isinstance(error, PodiumError)
    assert (error.policy_id, error.policy_version, error.rule_id) == (
        "acme",
        acme.version,
        "interns-no-premium",
    )
    assert str(error) == (
        f"policy acme ({acme.version}) rule interns-no-premium denies team interns the model "
        "openai/gpt-4o"
    )
    custom = PolicyDenied("msg", policy_id="a", policy_version="v", rule_id="r", reason="why")
    assert (str(custom), custom.reason) == ("msg", "why")


def test_decisions_are_memoised_and_the_memo_is_bounded() -> None:
    p = policy(SELECTORS)
    s = Subject(team="eng")
    first = p.decide(s, "m1")
    assert p.decide(Subject(team="eng"), "m1") is first
    assert p.decide(s, "m1", classification="internal") is not first  # another key
    for n in range(MEMO_SIZE + 10):
        d = p.decide(Subject(team=f"t{n}"), "m1")
        assert d.rule_id == "default-deny"
    assert len(p._memo) <= MEMO_SIZE
    assert p.decide(s, "m1").rule_id == "eng-any-project"


def test_decide_is_fast() -> None:
    p = policy(ACME)
    s = Subject(org="acme", team="interns", project="search", use_case="chat", key_id="k1")

    def cold() -> None:
        p._memo.clear()
        p.decide(s, "openai/gpt-4o-mini", classification="internal")

    memoised = min(timeit.repeat(lambda: p.decide(s, "openai/gpt-4o-mini"), number=2000, repeat=5))
    fresh = min(timeit.repeat(cold, number=500, repeat=5))
    # Budget: key → RBAC → policy ≤ 50 µs per call. Generous bounds for a shared machine.
    assert memoised / 2000 < 10e-6
    assert fresh / 500 < 50e-6


# -- retention ---------------------------------------------------------------------------------


def test_retention_rules(acme: Policy) -> None:
    conf, default = acme.retention
    assert (conf.id, conf.days, conf.classifications) == (
        "confidential-30d",
        30,
        ("confidential", "restricted"),
    )
    assert conf.matches("eng", "confidential")
    assert conf.matches(None, "restricted")  # teams: ["*"] selects a record without a team
    assert not conf.matches("eng", "internal")
    assert not conf.matches("eng", None)  # no class: the default class, internal
    assert default.classifications is None
    assert default.matches(None, None)
    assert acme.retention_days("eng", "confidential") == 30
    assert acme.retention_days("eng", "public") == 365
    assert acme.retention_days(None, None) == 365


def test_retention_selectors_and_keep_forever() -> None:
    p = policy(
        """\
        policy: keep
        classifications:
          default: confidential
          public: {destinations: [local, hosted]}
          confidential: {destinations: [local]}
        retention:
          - id: support-90d
            when: {teams: ["support*"]}
            days: 90
          - id: confidential-30d
            classifications: [confidential]
            days: 30
          - id: search-7d
            when: {projects: [search]}
            days: 7
        """
    )
    assert p.retention_days("support-eu", "public") == 90
    assert p.retention_days("support-eu", "confidential") == 30  # the shortest wins
    assert p.retention_days("support", None) == 30  # None: the default class
    assert p.retention_days("eng", "public") is None  # kept forever
    search = p.retention[2]
    assert not search.matches("eng", "public")  # a project selector needs a project
    assert search.matches("eng", "public", project="search")


def test_patterns_and_ids_without_spaces() -> None:
    found = problems(
        """\
        policy: a
        rules:
          - id: x y
            allow: {models: ["a b", ""]}
        """
    )
    assert found == [
        (3, 5, "rules.0.id", "'x y' is not a valid id"),
        (4, 22, "rules.0.allow.models.0", "'a b' is not a valid pattern"),
        (4, 29, "rules.0.allow.models.1", "'' is not a valid pattern"),
    ]
