"""Bad workflow definitions are reported precisely: file, line, column, key, message and hint.

Each bad workflow is a small file in ``fixtures/bad/``; the line each error belongs on is marked
there with a ``# <-`` comment, and ``CASES`` below says what must be reported. A case lists every
issue its file must produce, no more and no fewer, so a file with several problems proves they
are all reported in one ``DefinitionError``.

Tests copy the fixtures into ``tmp_path`` next to a tiny ``helpers.py``, which workflows call as
``./helpers.py:greet`` (paths relative to the workflow file).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from podium.errors import DefinitionError, DefinitionIssue
from podium.workflows.plan import load_workflow

BAD = Path(__file__).parent / "fixtures" / "bad"
MARK = "# <-"

HELPERS = """\
def greet(name, greeting="hello"):
    return f"{greeting}, {name}"


def add(a, b):
    return a + b
"""


@dataclass(frozen=True)
class Expect:
    """One issue that must be reported. ``message`` and ``hint`` are substrings."""

    line: int | None
    column: int | None
    key: str | None
    message: str
    hint: str | None = None
    """``None`` leaves the hint unchecked."""
    file: str | None = None
    """The fixture the issue is in, when it is not the one loaded (an included workflow)."""


def issue(
    at: str, key: str | None, message: str, hint: str | None = None, *, file: str | None = None
) -> Expect:
    """``at`` is ``"line:column"`` as an issue renders it, or ``""`` for no position."""
    line, _, column = at.partition(":")
    return Expect(
        int(line) if line else None, int(column) if column else None, key, message, hint, file
    )


@dataclass(frozen=True)
class Case:
    name: str
    fixture: str
    expects: tuple[Expect, ...]
    xfail: str | None = None


def bad(fixture: str, *expects: Expect, name: str | None = None, xfail: str | None = None) -> Case:
    return Case(name or fixture.removesuffix(".yaml"), fixture, expects, xfail)


NO_KIND = "a step needs one of the keys: call, model"
DUPLICATE = "YAML would silently keep only the last one"

# fmt: off
# (a table reads best one case to a row; the formatter would put every argument on its own line)
CASES = [
    # -- YAML syntax ---------------------------------------------------------------------------
    bad("syntax_unclosed_bracket.yaml",
        issue("5:28", None, "YAML syntax error: expected ',' or ']', but got '}'",
              "the '[' opened at line 5, column 19 is not closed")),
    bad("syntax_unclosed_at_end.yaml",
        issue("5:1", None, "expected ',' or ']', but got '<stream end>'",
              "the '[' opened at line 3, column 8 is not closed")),
    bad("syntax_tab_indent.yaml",
        issue("5:1", None, "YAML syntax error: found character '\\t'",
              "YAML forbids tabs for indentation; indent with spaces")),
    bad("syntax_bad_indent.yaml",
        issue("6:6", None, "YAML syntax error: expected <block end>",
              "check this line's indentation against the block that starts at line 4, column 5")),
    bad("syntax_missing_colon.yaml",
        issue("2:1", None, "could not find expected ':'", "is a ':' missing after this key?")),
    bad("syntax_colon_in_value.yaml",
        issue("5:22", None, "mapping values are not allowed here",
              "quote a value that holds ': '")),
    bad("syntax_two_documents.yaml",
        issue("6:1", None, "expected a single document in the stream but found another document",
              "remove the extra '---'")),
    # -- YAML structure ------------------------------------------------------------------------
    bad("duplicate_key.yaml",
        issue("6:5", "steps.0.input", "duplicate key 'input' (first written at line 5)",
              DUPLICATE)),
    bad("unsupported_tag.yaml",
        issue("4:11", "steps.0.call", "unsupported YAML tag '!!python/name:os.system'",
              "remove the tag")),
    bad("not_a_mapping.yaml",
        issue("2:1", None, "a workflow file must be a mapping with 'name' and 'steps'",
              "start with 'name: my-workflow'")),
    bad("empty.yaml", issue("1:1", None, "the file is empty", "start with 'name:'")),
    bad("only_comments.yaml", issue("1:1", None, "the file holds only comments", "'steps:'")),
    bad("alias_bomb.yaml", issue("", None, "aliases expand to more than", "'*alias'")),
    # -- schema --------------------------------------------------------------------------------
    bad("missing_name.yaml", issue("1:1", "name", "missing required key 'name'", "add 'name:'")),
    bad("misspelled_steps.yaml",
        issue("1:1", "steps", "missing required key 'steps'", "add 'steps:'"),
        issue("2:1", "setps", "unknown key 'setps'", "did you mean 'steps'?")),
    bad("unknown_key_step.yaml",
        issue("6:5", "steps.0.agregate", "unknown key 'agregate'", "did you mean 'aggregate'?")),
    bad("unknown_key_retry.yaml",
        issue("6:7", "steps.0.retry.max_attemps", "unknown key 'max_attemps'",
              "did you mean 'max_attempts'?")),
    bad("unknown_key_input_spec.yaml",
        issue("5:5", "inputs.model.tpye", "unknown key 'tpye'", "did you mean 'type'?")),
    bad("step_without_kind.yaml",
        issue("3:5", "steps.0", NO_KIND, "'cal' is not a step kind; did you mean 'call'?")),
    bad("step_with_two_kinds.yaml",
        issue("4:5", "steps.0.model", "this one has both 'call' and 'model'", "two steps")),
    bad("wrong_type.yaml",
        issue("6:7", "steps.0.retry.max_attempts", "expected a whole number, got 'three'")),
    bad("bad_duration.yaml",
        issue("5:5", "steps.0.timeout", "'5x' is not a duration; write e.g. 500ms, 5s")),
    bad("bad_step_id.yaml",
        issue("3:5", "steps.0.id", "'1st step' is not a valid id",
              "ids start with a letter or '_'")),
    bad("bad_choice.yaml",
        issue("6:5", "steps.0.failure", "expected 'fail_fast', 'quorum' or 'best_effort'",
              "did you mean 'quorum'?")),
    bad("bad_workflow_name.yaml",
        issue("1:1", "name", "'my workflow' is not a valid name", "no spaces")),
    bad("empty_steps.yaml", issue("2:1", "steps", "'steps' needs at least 1 item")),
    bad("if_without_then.yaml",
        issue("5:5", "steps.0.then", "missing required key 'then'", "add 'then:'")),
    bad("fallback_not_leaf.yaml",
        issue("5:5", "steps.0.fallback", "this must be a call, model or workflow step")),
    # -- checks across the definition ----------------------------------------------------------
    bad("duplicate_step_id.yaml",
        issue("6:5", "steps.1.id", "duplicate step id 'hello' (first defined at line 3)",
              "step ids are unique")),
    bad("expression_syntax.yaml",
        issue("7:5", "steps.1.when", "bad expression syntax: unexpected 'end of print statement'")),
    bad("expression_syntax_in_input.yaml",
        issue("9:7", "steps.1.input.name", "bad expression syntax")),
    bad("unknown_step_ref.yaml",
        issue("7:5", "steps.1.when", "expression reads steps.fetc, but no step has id 'fetc'",
              "did you mean 'fetch'?")),
    bad("unknown_step_ref_in_input.yaml",
        issue("9:7", "steps.1.input.name", "no step has id 'nope'")),
    bad("unknown_root_name.yaml",
        issue("6:5", "steps.0.when", "expression reads unknown name 'input'",
              "did you mean 'inputs'?")),
    bad("undeclared_input.yaml",
        issue("6:5", "steps.0.when", "expression reads inputs.topc, which is not declared",
              "did you mean 'topic'?")),
    bad("undeclared_input_none_declared.yaml",
        issue("4:5", "steps.0.when", "expression reads inputs.topic, which is not declared",
              "declare it under 'inputs:'")),
    bad("call_missing_module.yaml",
        issue("5:5", "steps.0.call", "cannot import module 'no_such_module'")),
    bad("call_missing_file.yaml", issue("3:5", "steps.0.call", "no such file")),
    bad("call_missing_function.yaml",
        issue("3:5", "steps.0.call", "module './helpers.py' has no attribute 'gret'")),
    bad("call_missing_function.yaml",
        issue("3:5", "steps.0.call", "has no attribute 'gret'", "did you mean 'greet'?"),
        name="call_missing_function_hint"),
    bad("call_unknown_parameter.yaml",
        issue("6:7", "steps.0.input.greting", "has no parameter 'greting'",
              "did you mean 'greeting'?")),
    bad("call_unknown_parameter.yaml",
        issue("6:7", "steps.0.input.greting",
              "function './helpers.py:greet' has no parameter 'greting'"),
        name="call_unknown_parameter_names_function"),
    bad("call_missing_parameter.yaml",
        issue("4:5", "steps.0.input", "needs input 'b'", "add them under 'input:'")),
    bad("unknown_aggregate.yaml",
        issue("6:5", "steps.0.aggregate", "unknown aggregate 'vot'", "did you mean 'vote'?")),
    bad("quorum_too_large.yaml",
        issue("9:5", "steps.0.quorum", "quorum 3 exceeds the 2 branches")),
    bad("quorum_without_failure.yaml",
        issue("8:5", "steps.0.quorum", "'quorum' needs 'failure: quorum'")),
    bad("keep_not_in_saga.yaml",
        issue("8:14", "steps.0.on_failure.keep.0",
              "'keep' names 'bok', which is not a step of this saga", "saga steps: book")),
    bad("subworkflow_missing.yaml",
        issue("4:5", "steps.0.workflow",
              "no workflow file or registered workflow './no_such_child.yaml'")),
    bad("subworkflow_self.yaml",
        issue("4:5", "steps.0.workflow", "workflow './subworkflow_self.yaml' includes itself",
              "subworkflow_self.yaml → ")),
    bad("cycle_a.yaml",
        issue("4:5", "steps.0.workflow", "workflow './cycle_a.yaml' includes itself",
              "cycle_b.yaml → ", file="cycle_b.yaml")),
    bad("includes_broken.yaml",
        issue("5:5", "steps.0.timeout", "'soon' is not a duration", file="broken_child.yaml")),
    bad("retry_on_parallel.yaml",
        issue("6:5", "steps.0.retry", "retry applies to call, model and workflow steps",
              "put the retry on the steps inside")),
    bad("bad_input_default.yaml",
        issue("5:5", "inputs.count.default", "default 'lots' is not of type integer")),
    bad("model_without_prompt.yaml",
        issue("4:5", "steps.0.model", "a model step needs 'prompt' or 'messages'")),
    # -- several problems in one file: every one is reported, at once --------------------------
    bad("many_parse_problems.yaml",
        issue("4:24", "steps.0.input.name", "duplicate key 'name'", DUPLICATE),
        issue("5:14", "steps.0.timeout", "unsupported YAML tag '!seconds'"),
        issue("6:1", "steps", "duplicate key 'steps' (first written at line 2)", DUPLICATE)),
    bad("many_schema_problems.yaml",
        issue("5:5", "steps.0.timeout", "'5x' is not a duration"),
        issue("6:5", "steps.1.id", "expected a string, got 9"),
        issue("8:13", "steps.1.retry.max_attemps", "unknown key", "did you mean 'max_attempts'?"),
        issue("9:5", "steps.2", NO_KIND, "did you mean 'call'?")),
    bad("many_plan_problems.yaml",
        issue("6:5", "steps.1.id", "duplicate step id 'a' (first defined at line 3)"),
        issue("8:5", "steps.1.when", "no step has id 'nope'"),
        issue("11:9", "steps.2.parallel.0.call", "cannot import module 'no_such_module'"),
        issue("12:5", "steps.2.aggregate", "unknown aggregate 'vot'", "did you mean 'vote'?")),
]
# fmt: on


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The bad fixtures and ``helpers.py``, side by side in a fresh directory."""
    shutil.copytree(BAD, tmp_path, dirs_exist_ok=True)
    (tmp_path / "helpers.py").write_text(HELPERS, encoding="utf-8")
    return tmp_path


def _issues_of(path: Path) -> list[DefinitionIssue]:
    with pytest.raises(DefinitionError) as info:
        load_workflow(path)
    return info.value.issues


def _listing(issues: list[DefinitionIssue]) -> str:
    return "reported:\n" + "\n".join(f"  {i!r}" for i in issues)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c,
            id=c.name,
            marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [],
        )
        for c in CASES
    ],
)
def test_bad_definition_is_reported_precisely(case: Case, workdir: Path) -> None:
    issues = _issues_of(workdir / case.fixture)
    assert len(issues) == len(case.expects), _listing(issues)
    for expect in case.expects:
        where = (expect.line, expect.column, expect.key)
        matches = [i for i in issues if (i.line, i.column, i.key) == where]
        assert matches, f"nothing reported at {where}; " + _listing(issues)
        got = matches[0]
        assert Path(got.file).resolve() == (workdir / (expect.file or case.fixture)).resolve()
        assert expect.message in got.message
        if expect.hint is not None:
            assert expect.hint in (got.hint or "")


def _marked_lines(text: str) -> set[int]:
    return {n for n, line in enumerate(text.splitlines(), 1) if MARK in line}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fixture_marks_the_lines_its_errors_belong_on(case: Case) -> None:
    files = {case.fixture} | {e.file for e in case.expects if e.file}
    for name in files:
        text = (BAD / name).read_text(encoding="utf-8")
        lines = len(text.splitlines())
        expected = {
            e.line
            for e in case.expects
            if (e.file or case.fixture) == name and e.line is not None and e.line <= lines
        }
        assert _marked_lines(text) == expected, name


def test_every_fixture_is_used() -> None:
    used = {c.fixture for c in CASES} | {e.file for c in CASES for e in c.expects if e.file}
    assert sorted(p.name for p in BAD.iterdir()) == sorted(used)


def test_issue_renders_file_line_column_key_and_hint(workdir: Path) -> None:
    path = workdir / "unknown_key_retry.yaml"
    (got,) = _issues_of(path)
    assert str(got) == (
        f"{path}:6:7: unknown key 'max_attemps' (at 'steps.0.retry.max_attemps')\n"
        "    hint: did you mean 'max_attempts'?"
    )


def test_issues_come_in_file_order(workdir: Path) -> None:
    lines = [i.line or 0 for i in _issues_of(workdir / "many_plan_problems.yaml")]
    assert lines == sorted(lines)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    (got,) = _issues_of(path)
    assert (got.file, got.line, got.message) == (str(path), None, "no such file")


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\nsteps: []\n".encode("latin-1"))
    (got,) = _issues_of(path)
    assert got.file == str(path)
    assert got.message.startswith("not UTF-8 text")


def test_control_character(tmp_path: Path) -> None:
    path = tmp_path / "bell.yaml"
    path.write_text("name: ding\x07\nsteps: []\n", encoding="utf-8")
    (got,) = _issues_of(path)
    assert (got.file, got.line, got.column) == (str(path), 1, 11)
    assert got.message == "character '\\x07' is not allowed in YAML"
    assert got.hint


VALID = """\
name: valid
inputs:
  who: string
  model: {type: string, default: fake/echo}  # an input named like a step kind
  count: {type: integer, default: 2}
steps:
  - id: hello
    call: ./helpers.py:greet
    input: {name: '{{ inputs.who }}'}
    retry: {max_attempts: 2, initial_delay: 100ms}
    timeout: 5s
  - id: poll
    parallel:
      - &branch
        id: one
        call: ./helpers.py:greet
        input: {name: '{{ steps.hello.output }}'}
      - <<: *branch  # a merged key overridden by one written here is not a duplicate
        id: two
    aggregate: vote
    failure: quorum
    quorum: 2
  - id: booking
    when: '{{ inputs.count > 1 }}'
    saga:
      - id: book
        call: ./helpers.py:add
        input: {a: 1, b: '{{ inputs.count }}'}
        compensate: {call: ./helpers.py:greet, input: {name: undo}}
    on_failure: {keep: [book]}
  - id: child
    workflow: ./child.yaml
    input: {who: '{{ inputs.model }}'}
output: '{{ steps.poll.output }}'
"""

CHILD = """\
name: child
inputs:
  who: string
steps:
  - call: ./helpers.py:greet
    input: {name: '{{ inputs.who }}'}
"""


def test_valid_file_has_no_error(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text(HELPERS, encoding="utf-8")
    (tmp_path / "child.yaml").write_text(CHILD, encoding="utf-8")
    (tmp_path / "valid.yaml").write_text(VALID, encoding="utf-8")
    plan = load_workflow(tmp_path / "valid.yaml")
    assert plan.name == "valid"
    assert [c.name for c in plan.children] == ["child"]
