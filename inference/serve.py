"""A small OpenAI-compatible HTTP server over any of our generators (``/v1/chat/completions``,
``/v1/models``), standard library only.

It lets the ``openai`` backend, and any OpenAI client, use a local model: e.g. the bundled SmolLM2 on
CPU for tests and offline demos::

    python -m inference.serve --generator HuggingFaceTB/SmolLM2-135M-Instruct --port 8000

Requests are served one at a time per model (the model is not thread-safe); concurrent clients queue.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Sequence

from .config import parse_args
from .errors import run_cli
from .generators import Generator, load_generator

logger = logging.getLogger(__name__)


class OpenAICompatibleHandler(BaseHTTPRequestHandler):
    """Handler; ``server.generator`` and ``server.model_name`` are set by :func:`make_server`."""

    # One request per connection: no handler thread lingers on an idle kept-alive socket (such threads,
    # woken during interpreter shutdown, aborted the process), and a client never sees a stale stream.
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):  # route through logging, never the Authorization header
        logger.debug("%s %s", self.address_string(), fmt % args)

    def send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        if self.path.rstrip("/") == "/v1/models":
            self.send_json(200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model"}]})
        else:
            self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def read_json(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self.send_json(400, {"error": {"message": "malformed JSON body", "type": "invalid_request_error"}})
            return None

    def do_POST(self):  # noqa: N802
        request = self.read_json()
        if request is None:
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
            self.send_json(400, {"error": {"message": "messages must be a non-empty list",
                                           "type": "invalid_request_error"}})
            return
        prompt = str(messages[-1].get("content", ""))
        n = int(request.get("n") or 1)
        with self.server.lock:
            texts = self.server.generator.generate(
                [prompt], n=n, temperature=float(request.get("temperature", 0.0) or 0.0),
                top_p=float(request.get("top_p", 1.0) or 1.0),
                max_new_tokens=int(request.get("max_tokens") or 256), seed=request.get("seed"))[0]
        tokens = len(" ".join(texts).split())
        self.send_json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": self.server.model_name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                        for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": tokens,
                      "total_tokens": len(prompt.split()) + tokens}})


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that timed out and hung up is routine for a server; anything else keeps its traceback.
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            logger.debug("client %s went away before the response", client_address)
            return
        super().handle_error(request, client_address)


def make_server(generator: Generator, host: str = "127.0.0.1", port: int = 0, model_name: str | None = None,
                handler: type[OpenAICompatibleHandler] = OpenAICompatibleHandler) -> ThreadingHTTPServer:
    """Bind (port 0 picks a free one; read ``server.server_address``); call ``serve_forever`` to run."""
    server = _Server((host, port), handler)
    server.daemon_threads = True
    server.generator = generator
    server.model_name = model_name or generator.model_name
    server.lock = threading.Lock()
    return server


@dataclass
class ServeArguments:
    """Serve a local model through an OpenAI-compatible API."""
    generator: str = field(default="HuggingFaceTB/SmolLM2-135M-Instruct", metadata={
        "help": "the generator to serve: name or path", "aliases": ("model",)})
    generator_backend: str = field(default="hf", metadata={"help": "hf | vllm", "aliases": ("backend",)})
    prompt_format: str = "chat"
    host: str = "127.0.0.1"
    port: int = 8000


def main(argv: Sequence[str]) -> int:
    args = parse_args(ServeArguments, argv, prog="python -m inference.serve")
    generator = load_generator(args.generator, backend=args.generator_backend, prompt_format=args.prompt_format,
                               **({"show_progress": False} if args.generator_backend == "hf" else {}))
    server = make_server(generator, args.host, args.port, model_name=args.generator)
    logger.info("serving %s on http://%s:%d/v1", args.generator, *server.server_address[:2])
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    run_cli(main)
