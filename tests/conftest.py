"""Shared fixtures: tiny datasets written on the fly, the bundled models loaded once per session, and a real
OpenAI-compatible HTTP server on 127.0.0.1 serving the bundled SmolLM2 (with scripted faults)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "data" / "scifact"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"

# Six documents on unrelated topics and three queries with one obvious answer each.
TINY_CORPUS = [
    {"_id": "d1", "title": "Photosynthesis", "text": "Plants convert sunlight, water and carbon dioxide into glucose and oxygen in chloroplasts."},
    {"_id": "d2", "title": "Volcanoes", "text": "A volcano erupts when magma from the mantle rises through the crust and escapes as lava and ash."},
    {"_id": "d3", "title": "Insulin", "text": "Insulin is a hormone made by the pancreas that lowers blood glucose by helping cells absorb sugar."},
    {"_id": "d4", "title": "Chess openings", "text": "The Sicilian Defence is a chess opening that begins with the moves e4 c5."},
    {"_id": "d5", "title": "Jet streams", "text": "Jet streams are fast, narrow air currents in the upper atmosphere that steer weather systems."},
    {"_id": "d6", "title": "Bread baking", "text": "Yeast ferments sugars in dough, producing carbon dioxide that makes bread rise."},
]
TINY_QUERIES = [
    {"_id": "q1", "text": "how do plants make oxygen from sunlight"},
    {"_id": "q2", "text": "which organ produces the hormone that lowers blood sugar"},
    {"_id": "q3", "text": "why does dough rise when baking bread"},
]
TINY_QRELS = [("q1", "d1", 1), ("q2", "d3", 1), ("q3", "d6", 1)]


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_beir(root: Path, corpus=TINY_CORPUS, queries=TINY_QUERIES, qrels=TINY_QRELS, split="test") -> Path:
    write_jsonl(root / "corpus.jsonl", corpus)
    write_jsonl(root / "queries.jsonl", queries)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return root


@pytest.fixture
def tiny_beir(tmp_path) -> Path:
    return write_beir(tmp_path / "tiny")


@pytest.fixture(scope="session")
def minilm():
    from inference import Embedder

    return Embedder(MINILM, show_progress=False)


@pytest.fixture(scope="session")
def smollm2():
    from inference import load_generator

    return load_generator(SMOLLM2, backend="hf", show_progress=False, batch_size=8)


# ---------------------------------------------------------------- CLI runs
_PREIMPORTED = {"client": None, "server": None, "sock": None, "folder": None}


def pytest_sessionstart(session):
    """Start the pre-imported interpreter (tests/preimported.py) in the background; runs that come before it is
    ready, or with RIR_TEST_PREIMPORT=0, start a real interpreter."""
    if os.environ.get("RIR_TEST_PREIMPORT", "1") == "0" or hasattr(session.config, "workerinput"):
        return
    folder = tempfile.mkdtemp(prefix="rir-preimport-")
    sock = os.path.join(folder, "sock")
    with open(os.path.join(folder, "server.log"), "w") as log:  # the server holds its own copy of the handle
        _PREIMPORTED["server"] = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("preimported.py")), sock, folder], cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
    _PREIMPORTED.update(client=os.path.join(folder, "bin", "python"), sock=sock, folder=folder)


def wait_for_preimported(timeout: float) -> bool:
    """Wait until the pre-imported interpreter serves (False when it is off or has died)."""
    server, sock = _PREIMPORTED["server"], _PREIMPORTED["sock"]
    deadline = time.time() + timeout
    while server is not None and server.poll() is None and time.time() < deadline:
        if os.path.exists(sock):
            return True
        time.sleep(0.2)
    return False


def cli_python() -> str:
    """The interpreter for ``python -m`` runs: the pre-imported server's client once it is written."""
    client = _PREIMPORTED["client"]
    return client if client and os.path.exists(client) else sys.executable


def run_module(module: str, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` as a user would, capturing output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([cli_python(), "-m", module, *args], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def sigkill_once_written(cmd: list[str], path: Path, timeout: float = 400) -> None:
    """Start ``cmd`` in the repository and SIGKILL its process group as soon as ``path`` exists (or it ends, or
    time runs out). The group, as a shell's kill of a job: a vLLM engine's worker processes outlive a SIGKILL of
    their parent alone."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# ---------------------------------------------------------------- OpenAI-compatible server with faults
class FaultPlan:
    """Faults the server plays, one per incoming request, before serving normally again.

    ``"429"`` (with Retry-After: 0), ``"500"``, ``"hang"`` (sleeps past the client's timeout), ``"drop"`` (closes
    the connection without a response), ``"badjson"`` (a 200 whose body is not JSON) and ``"empty"`` (a valid
    completion with empty content). Real HTTP, real
    server, real model: only the fault is scripted, since a healthy server cannot be made to produce it.
    """

    def __init__(self):
        self.queue: deque[str] = deque()
        self.requests = 0
        self.lock = threading.Lock()
        self.hang_seconds = 3.0
        self.always: str | None = None

    def next(self) -> str | None:
        with self.lock:
            self.requests += 1
            if self.queue:
                return self.queue.popleft()
            return self.always

    def reset(self):
        with self.lock:
            self.queue.clear()
            self.requests = 0
            self.always = None


@pytest.fixture(scope="session")
def openai_server(smollm2):
    from inference.serve import OpenAICompatibleHandler, make_server

    plan = FaultPlan()

    class FaultyHandler(OpenAICompatibleHandler):
        def do_POST(self):  # noqa: N802
            fault = plan.next()
            if fault in ("429", "500"):
                self.read_json()  # consume the body so the kept-alive connection stays in sync
            if fault == "429":
                self.send_json(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                               headers={"Retry-After": "0"})
            elif fault == "500":
                self.send_json(500, {"error": {"message": "internal error", "type": "server_error"}})
            elif fault == "hang":
                self.read_json()
                time.sleep(plan.hang_seconds)
                self.send_json(503, {"error": {"message": "too late", "type": "server_error"}})
            elif fault == "drop":
                self.read_json()
                self.close_connection = True
                self.connection.shutdown(2)
            elif fault == "badjson":
                self.read_json()
                body = b"{not json"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif fault == "empty":
                self.read_json()
                self.send_json(200, {"id": "chatcmpl-empty", "object": "chat.completion", "created": 0,
                                     "model": "smollm2-local", "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": ""}}],
                                     "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}})
            else:
                super().do_POST()

    server = make_server(smollm2, port=0, model_name="smollm2-local", handler=FaultyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    server.plan = plan
    server.base_url = f"http://{host}:{port}/v1"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(openai_server):
    openai_server.plan.reset()
    yield openai_server
    openai_server.plan.reset()


# ---------------------------------------------------------------- process exit
# After a full run the interpreter sometimes aborts during its own teardown ("terminate called without an
# active exception", exit 134) — native thread pools (torch / OpenMP) torn down after the many model loads,
# server threads and subprocesses of this suite. Every test has passed and been reported by then, so once
# pytest is completely done we leave with its real exit status and skip the interpreter's teardown.
_EXIT_STATUS = {"code": None}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["code"] = int(exitstatus)


def pytest_unconfigure(config):
    if _PREIMPORTED["server"] is not None:
        _PREIMPORTED["server"].kill()
        _PREIMPORTED["server"].wait()
        shutil.rmtree(_PREIMPORTED["folder"], ignore_errors=True)
    if _EXIT_STATUS["code"] is not None and not hasattr(config, "workerinput"):
        vllm_backend = sys.modules.get("inference.generators.vllm_backend")
        if vllm_backend is not None:  # its engines' worker processes outlive an os._exit
            vllm_backend.shutdown_engines()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["code"])
