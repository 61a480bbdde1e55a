"""The openai backend against a real HTTP OpenAI-compatible server on 127.0.0.1 serving the bundled SmolLM2."""
import logging
import time

import pytest

from inference.errors import GeneratorError
from inference.generators import load_generator

# Built at run time so no key-shaped literal sits in the source.
FAKE_KEY = "sk-" + "reinforcedir" + "testkey" + "0123456789abcdef"


def client(server, tmp_path=None, **kw):
    opts = dict(backend="openai", base_url=server.base_url, api_key=FAKE_KEY, timeout=20, max_attempts=3,
                backoff_base=0.05, backoff_max=0.2, concurrency=2, show_progress=False)
    if tmp_path is not None:
        opts["cache_dir"] = tmp_path / "cache"
    opts.update(kw)
    return load_generator("smollm2-local", **opts)


def test_generates_through_the_local_server(server, smollm2):
    gen = client(server)
    out = gen.generate(["Name a primary colour."], max_new_tokens=8)
    direct = smollm2.generate(["Name a primary colour."], max_new_tokens=8)
    assert out == direct and out[0][0]  # greedy: same text as calling the model directly
    assert server.plan.requests == 1


def test_429_then_success(server):
    server.plan.queue.extend(["429", "429"])
    out = client(server).generate(["Say hi."], max_new_tokens=4)
    assert out[0][0] and server.plan.requests == 3


def test_500_storm_hits_the_attempt_cap(server):
    server.plan.always = "500"
    gen = client(server, max_attempts=4)
    start = time.perf_counter()
    with pytest.raises(GeneratorError) as err:
        gen.generate(["Say hi."], max_new_tokens=4)
    assert "gave up after 4 attempts" in str(err.value) and "HTTP 500" in str(err.value)
    assert server.plan.requests == 4  # exactly the cap, never forever
    assert time.perf_counter() - start < 10


def test_timeout_is_retried_then_succeeds(server):
    # The retry does real generation: the timeout leaves room for it on a busy 2-core machine.
    server.plan.hang_seconds = 8.0
    server.plan.queue.append("hang")
    out = client(server, timeout=4.0).generate(["Say hi."], max_new_tokens=4)
    assert out[0][0] and server.plan.requests == 2


def test_timeouts_until_the_cap(server):
    server.plan.hang_seconds = 1.0
    server.plan.always = "hang"
    with pytest.raises(GeneratorError) as err:
        client(server, timeout=0.3, max_attempts=2).generate(["Say hi."], max_new_tokens=4)
    assert "APITimeoutError" in str(err.value)


def test_dropped_connection_and_malformed_body_are_retried(server):
    server.plan.queue.extend(["drop", "badjson"])
    out = client(server).generate(["Say hi."], max_new_tokens=4)
    assert out[0][0] and server.plan.requests == 3


def test_client_errors_are_not_retried(server, monkeypatch):
    gen = client(server)
    monkeypatch.setattr(gen._client, "base_url", server.base_url.replace("/v1", "/nope"))
    with pytest.raises(GeneratorError) as err:
        gen.generate(["Say hi."], max_new_tokens=4)
    assert "HTTP 404" in str(err.value) and "rejected" in str(err.value)
    assert server.plan.requests == 1  # one attempt: a 4xx will not fix itself


def test_cache_resumes_without_repaying_and_keeps_partial_results(server, tmp_path, caplog):
    prompts = ["Say one.", "Say two.", "Say three."]
    gen = client(server, tmp_path, concurrency=1, max_attempts=2)
    # The first prompt succeeds and is cached; the server then fails everything.
    gen.generate(prompts[:1], max_new_tokens=4)
    server.plan.always = "500"
    with caplog.at_level(logging.DEBUG), pytest.raises(GeneratorError) as err:
        gen.generate(prompts, max_new_tokens=4)
    assert "2 of 2 requests failed" in str(err.value) and "rerun to resume" in str(err.value)
    # Server healthy again: the rerun pays only for the two missing prompts.
    server.plan.reset()
    out = client(server, tmp_path).generate(prompts, max_new_tokens=4)
    assert len(out) == 3 and all(o[0] for o in out)
    assert server.plan.requests == 2
    # The key is in no cache file, log line or error.
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert FAKE_KEY not in path.read_text()
    assert FAKE_KEY not in caplog.text and FAKE_KEY not in str(err.value)
    assert FAKE_KEY not in str(gen.describe())


def test_key_and_base_url_come_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    gen = load_generator("smollm2-local", backend="openai", show_progress=False)
    assert gen.generate(["Say hi."], max_new_tokens=4)[0][0]
    assert gen.describe()["base_url"] == server.base_url and FAKE_KEY not in str(gen.describe())
