"""The bundled Qwen2.5-Coder GGUFs: parts joined in order and verified (tiny fake parts, no model needed), a missing
or altered part refused in one line, the hub names resolving with no network, and Qwen's chat turn ending at
<|im_end|> in the hf backend and through the OpenAI-compatible server (the vLLM engine: tests/test_vllm_engine.py).
The real-model tests need `make models-qwen` (``make test`` installs it and sets REQUIRE_QWEN=1)."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import threading

import pytest

from inference.errors import UserError
from inference.generators.base import prompt_token_ids, stop_token_ids
from inference.resolver import QWEN_05B, GGUFParts

QWEN = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
IM_END, ENDOFTEXT, IM_START = 151645, 151643, 151644
INSTALLED = all(importlib.util.find_spec(p.replace("-", "_")) for p in QWEN_05B.packages)
needs_qwen = pytest.mark.skipif(not INSTALLED and not os.environ.get("REQUIRE_QWEN"),
                                reason="the Qwen 0.5B packages are not installed (make models-qwen)")


def fake_parts(tmp_path, monkeypatch, contents=(b"GGUF" + b"a" * 60, b"b" * 64, b"c" * 10)) -> GGUFParts:
    """Packages fakeqwen_part1..N on sys.path, each holding data/partNN.bin, and the spec that pins them."""
    for i, data in enumerate(contents, 1):
        folder = tmp_path / "site" / f"fakeqwen_part{i}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("")
        (folder / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    whole = b"".join(contents)
    return GGUFParts(name="Fake/Qwen-Tiny", folder="Qwen-Tiny",
                     packages=tuple(f"fakeqwen-part{i}" for i in range(1, len(contents) + 1)),
                     part_sha256=tuple(hashlib.sha256(c).hexdigest() for c in contents),
                     size=len(whole), sha256=hashlib.sha256(whole).hexdigest())


def test_parts_are_joined_in_order_and_verified(tmp_path, monkeypatch):
    spec = fake_parts(tmp_path, monkeypatch)
    out = spec.join(tmp_path / "joined" / "model.gguf")
    assert out.read_bytes() == b"GGUF" + b"a" * 60 + b"b" * 64 + b"c" * 10
    assert hashlib.sha256(out.read_bytes()).hexdigest() == spec.sha256
    assert os.listdir(out.parent) == ["model.gguf"]  # no temporary file left beside it


def test_an_altered_part_is_refused_in_one_line_naming_its_package(tmp_path, monkeypatch):
    spec = fake_parts(tmp_path, monkeypatch)
    (tmp_path / "site" / "fakeqwen_part2" / "data" / "part02.bin").write_bytes(b"b" * 63 + b"X")
    with pytest.raises(UserError) as err:
        spec.join(tmp_path / "joined" / "model.gguf")
    message = str(err.value)
    assert "'fakeqwen-part2'" in message and "part 2 of 3" in message and "altered" in message
    assert "\n" not in message
    assert not (tmp_path / "joined" / "model.gguf").exists() and os.listdir(tmp_path / "joined") == []


def test_parts_in_the_wrong_order_are_refused(tmp_path, monkeypatch):
    spec = fake_parts(tmp_path, monkeypatch)
    swapped = GGUFParts(spec.name, spec.folder, (spec.packages[1], spec.packages[0], spec.packages[2]),
                        spec.part_sha256, spec.size, spec.sha256)
    with pytest.raises(UserError):
        swapped.join(tmp_path / "joined" / "model.gguf")


def test_a_missing_part_is_refused_before_any_work(tmp_path, monkeypatch):
    spec = fake_parts(tmp_path, monkeypatch)
    missing = GGUFParts(spec.name, spec.folder, (*spec.packages, "fakeqwen-part9"), (*spec.part_sha256, "0" * 64),
                        spec.size, spec.sha256)
    with pytest.raises(UserError) as err:
        missing.join(tmp_path / "joined" / "model.gguf")
    assert "'fakeqwen-part9'" in str(err.value) and "not installed" in str(err.value)
    assert "make models-qwen" in str(err.value)
    assert not (tmp_path / "joined").exists()  # nothing written


def test_a_missing_local_model_folder_is_said_in_plain_words(tmp_path):
    from inference.resolver import resolve_model_path

    for path in (str(tmp_path / "nope"), "./no/such/model", "runs/x/round_1/retriever"):
        with pytest.raises(UserError, match="no such model folder"):
            resolve_model_path(path)
    assert resolve_model_path("BAAI/bge-large-en-v1.5") == "BAAI/bge-large-en-v1.5"  # a hub name passes


def test_the_pinned_requirements_match_the_resolver():
    """requirements-qwen.txt installs exactly the packages the resolver joins, each pinned by hash."""
    from inference.resolver import QWEN_15B

    lines = [line.split()[0] for line in open(os.path.join(os.path.dirname(__file__), "..", "requirements-qwen.txt"))
             if line.strip() and not line.startswith("#")]
    assert lines == [f"{p}==0.9.0" for p in QWEN_05B.packages] + [f"{p}==0.2.0" for p in QWEN_15B.packages]
    text = open(os.path.join(os.path.dirname(__file__), "..", "requirements-qwen.txt")).read()
    assert text.count("--hash=sha256:") == len(lines)


@pytest.fixture(scope="module")
def qwen():
    from inference import load_generator

    return load_generator(QWEN, backend="hf", show_progress=False, batch_size=4)


@needs_qwen
def test_the_bundled_name_resolves_offline_to_a_verified_folder():
    code = ("import json, pathlib; from inference.resolver import resolve_model_path; "
            f"p = pathlib.Path(resolve_model_path('{QWEN}')); "
            "print(json.loads((p / 'reinforced_ir_source.json').read_text())['sha256'])")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_PROXY": "*",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}  # any network use would fail
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == QWEN_05B.sha256


@needs_qwen
def test_qwen_stops_at_the_end_of_its_turn_with_one_bos_rule(qwen):
    tok = qwen.tokenizer
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert qwen.model.generation_config.eos_token_id == [IM_END, ENDOFTEXT]  # as the resolver wrote it
    assert {IM_END, ENDOFTEXT} <= set(qwen.eos_ids)
    # A folder whose generation config names no eos (a user's, an exported merge) still stops at <|im_end|>.
    assert IM_END in stop_token_ids(tok, None)
    ids = prompt_token_ids(tok, "Say hello in French.", "chat")
    assert ids[0] == IM_START and ENDOFTEXT not in ids  # Qwen has no BOS; nothing is prepended
    text = qwen.generate(["Say hello in French."], max_new_tokens=64)[0][0]
    assert text and "<|im" not in text and "assistant" not in text.lower()
    assert qwen.stats.new_tokens < 64  # it ended its turn, not the token budget


@needs_qwen
def test_qwen_through_the_openai_compatible_server_gives_the_same_text(qwen):
    from inference.generators import load_generator
    from inference.serve import make_server

    server = make_server(qwen, port=0, model_name="qwen-local")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        client = load_generator("qwen-local", backend="openai", base_url=f"http://{host}:{port}/v1",
                                api_key="none", timeout=120, max_attempts=1, show_progress=False)
        prompt = ["Name a primary colour in one word."]
        assert client.generate(prompt, max_new_tokens=16) == qwen.generate(prompt, max_new_tokens=16)
    finally:
        server.shutdown()
        server.server_close()
