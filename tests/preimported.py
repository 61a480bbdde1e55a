"""A pre-imported interpreter for the suite's ``python -m`` runs: every spawned CLI pays ~9 s of imports (torch,
transformers' generation utilities, sentence-transformers) before its first line of work, and the suite spawns
well over a hundred. This server imports those third-party libraries once and forks a fresh child per run.

Each run is still its own process running the real module as ``__main__`` (``runpy``, as ``python -m`` does),
with its own argv, environment, working directory and stdin/stdout/stderr (passed over a Unix socket), so exit
codes, output, files and kills behave as before. What is shared is only what the parent imported: third-party
libraries, never this repository's packages. A run whose environment differs in a variable that an import may
read (anything but ``OPENAI_*``, ``RIR_*``, ``PYTHONUNBUFFERED``, LLaMA-Factory's own and ``RUNTIME_ONLY_NAMES``)
gets a real interpreter instead, as does anything but ``python -m``. ``RIR_TEST_PREIMPORT=0`` turns the server off.

Children forked here see ``sys.executable`` as the client script (``bin/python`` in the server's folder), so a CLI
that spawns ``sys.executable -m`` steps (the self-boost driver) gets the server too; the environment's other commands
(``torchrun``) are linked beside it and start real interpreters; LLaMA-Factory runs as ``python -m
llamafactory.cli`` and is forked like any other module.

Protocol: the client sends one JSON request (argv, cwd, env) with its fds 0-2; the server answers ``F`` (start a
real interpreter) or ``K`` (forked), then, after the child ends, its exit code (negative: killed by that signal).
The client forwards SIGINT/SIGTERM; if the client dies, the child is SIGKILLed.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import struct
import sys
import threading
import types

# LLaMA-Factory's variables too: it is not preloaded (nothing preloaded imports it), so a child reads them fresh.
RUNTIME_ONLY_PREFIXES = ("OPENAI_", "RIR_", "PYTHONUNBUFFERED", "LLAMAFACTORY_", "DISABLE_VERSION_CHECK")
# Set by shells and pytest per command or test, or the terminal's size (read when printing): no import reads them.
# PYTORCH_NVML_BASED_CUDA_CHECK: set by importing DeepSpeed (sentence-transformers' save() does) and read by
# torch.cuda.is_available() when called, not at import.
RUNTIME_ONLY_NAMES = {"_", "PWD", "OLDPWD", "SHLVL", "PYTEST_CURRENT_TEST", "COLUMNS", "LINES",
                      "PYTORCH_NVML_BASED_CUDA_CHECK"}
STARTED_WITH = dict(os.environ)  # before the imports, some of which set variables (torch: KMP_INIT_AT_FORK, ...)
SET_BY_IMPORTS: dict[str, str] = {}

CLIENT = '''#!{python} -S
# python -m through the pre-imported server (tests/preimported.py); anything else, or no server: the real one.
import json, os, signal, socket, struct, sys
REAL, SOCK = {python!r}, {sock!r}
def real():
    os.execv(REAL, [REAL, *sys.argv[1:]])
if len(sys.argv) < 3 or sys.argv[1] != "-m":
    real()
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    conn.connect(SOCK)
except OSError:
    real()
body = json.dumps({{"argv": sys.argv[2:], "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
socket.send_fds(conn, [struct.pack("!I", len(body))], [0, 1, 2])
conn.sendall(body)
if conn.recv(1) != b"K":
    conn.close()
    real()
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda s, _f: conn.sendall(struct.pack("!i", s)))
status = b""
while len(status) < 4:
    chunk = conn.recv(4 - len(status))
    if not chunk:
        sys.exit(1)
    status += chunk
code = struct.unpack("!i", status)[0]
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
'''


PRELOAD = ("numpy", "torch", "transformers", "transformers.models.auto.modeling_auto", "transformers.generation",
           "transformers.trainer", "faiss", "pytrec_eval", "scipy.stats", "sentence_transformers", "yaml")


def preload() -> None:
    """The libraries the repository's CLIs import (not the repository's own packages: the children import those
    fresh, so nothing of ours is shared). One missing from this environment is skipped."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            print(f"not preloaded: {name} ({exc})", flush=True)


def write_client(folder: str, sock: str) -> str:
    """``folder/bin/python`` (the client) beside links to the environment's other commands; returns its path."""
    bindir = os.path.join(folder, "bin")
    os.makedirs(bindir, exist_ok=True)
    client = os.path.join(bindir, "python")
    with open(client, "w") as fh:
        fh.write(CLIENT.format(python=sys.executable, sock=sock))
    os.chmod(client, 0o755)
    real_bin = os.path.dirname(sys.executable)
    for name in os.listdir(real_bin):  # the environment's other commands (torchrun, ...) beside it
        if not name.startswith("python") and not os.path.lexists(os.path.join(bindir, name)):
            os.symlink(os.path.join(real_bin, name), os.path.join(bindir, name))
    return client


def recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def import_time_differences(env: dict) -> list[str]:
    """The variables in which the run's environment differs from this server's and that an import may read."""
    def differs(key):
        if key in SET_BY_IMPORTS:  # a parent that imported the same libraries passes them on
            return env.get(key, SET_BY_IMPORTS[key]) != SET_BY_IMPORTS[key]
        return env.get(key) != STARTED_WITH.get(key)

    keys = (set(env) | set(STARTED_WITH) | set(SET_BY_IMPORTS)) - RUNTIME_ONLY_NAMES
    return sorted(k for k in keys if not k.startswith(RUNTIME_ONLY_PREFIXES) and differs(k))


def run_child(request: dict, fds: list[int], client: str) -> None:
    """In the forked child: become ``python -m module argv`` and exit as it would."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update({**SET_BY_IMPORTS, **request["env"]})  # as the imports would have set them
    sys.path[0] = request["cwd"]  # as `python -m` puts the working directory first
    sys.executable = client
    sys.argv = list(request["argv"])
    sys.modules["__main__"] = types.ModuleType("__main__")
    code = 0
    try:
        import runpy

        runpy._run_module_as_main(sys.argv[0])  # what `python -m` calls
    except SystemExit as exc:
        code = exit_code(exc)
    except BaseException:  # noqa: BLE001 - the interpreter's own handling: traceback, exit 1
        kind, value, trace = sys.exc_info()
        value = value.with_traceback(trace.tb_next)  # from runpy on, as `python -m` prints it
        sys.excepthook(kind, value, value.__traceback__)
        code = 1
    threading._shutdown()  # noqa: SLF001 - join non-daemon threads, as the interpreter does at exit
    atexit._run_exitfuncs()  # noqa: SLF001
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)


def exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def serve_one(conn: socket.socket, listener: socket.socket, client: str) -> None:
    """In a forked handler: fork the run's child, forward signals to it, report its exit code."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    head, fds, _flags, _addr = socket.recv_fds(conn, 4, 3)
    request = json.loads(recv_exact(conn, struct.unpack("!I", head)[0]))
    differences = import_time_differences(request["env"])
    if differences:
        print(f"real interpreter for {request['argv'][0]}: environment differs in {differences}", flush=True)
        conn.sendall(b"F")
        os._exit(0)
    conn.sendall(b"K")
    child = os.fork()
    if child == 0:
        try:
            conn.close()
            listener.close()
            run_child(request, fds, client)
        finally:  # run_child ends in os._exit; this is for a failure before it runs the module
            os._exit(1)
    for fd in fds:
        os.close(fd)

    def forward():
        while True:
            try:
                data = recv_exact(conn, 4)
            except (EOFError, OSError):  # the client died: so does its child
                data = struct.pack("!i", signal.SIGKILL)
            try:
                os.kill(child, struct.unpack("!i", data)[0])
            except ProcessLookupError:
                return
            if data == struct.pack("!i", signal.SIGKILL):
                return

    threading.Thread(target=forward, daemon=True).start()
    _pid, status = os.waitpid(child, 0)
    try:
        conn.sendall(struct.pack("!i", os.waitstatus_to_exitcode(status)))
    except OSError:
        pass
    os._exit(0)


def serve(sock: str, folder: str) -> None:
    preload()
    SET_BY_IMPORTS.update({k: v for k, v in os.environ.items() if STARTED_WITH.get(k) != v})
    client = write_client(folder, sock)
    parent = os.getppid()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped automatically
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock + ".tmp")
    listener.listen(64)
    os.replace(sock + ".tmp", sock)  # clients connect only once everything is imported
    listener.settimeout(1.0)
    while os.getppid() == parent:  # the suite that started us is gone: stop
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        conn.settimeout(None)
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            try:
                serve_one(conn, listener, client)
            finally:  # a forked handler never returns into this loop
                os._exit(1)
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
