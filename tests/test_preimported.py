"""The suite's pre-imported interpreter (tests/preimported.py) behaves as ``python -m`` does: output, exit codes,
tracebacks, signals, argv, ``__main__``; a changed import-time variable gets a real interpreter; a killed client
takes its child with it."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import cli_python, wait_for_preimported

PROBE = '''import os, sys
what = sys.argv[1]
print("out", __name__, os.path.basename(sys.argv[0]), sys.argv[2:], flush=True)
print("err", os.environ.get("OPENAI_PROBE"), file=sys.stderr, flush=True)
if what == "code":
    sys.exit(3)
if what == "message":
    sys.exit("stopped: a message")
if what == "raise":
    raise ValueError("boom")
if what == "signal":
    os.kill(os.getpid(), 15)
if what == "sleep":
    open(sys.argv[2], "w").write(str(os.getpid()))
    import time; time.sleep(60)
if what == "executable":
    print(sys.executable)
'''


@pytest.fixture(scope="module")
def client():
    if not wait_for_preimported(timeout=300):
        pytest.skip("the pre-imported interpreter is off (RIR_TEST_PREIMPORT=0)")
    return cli_python()


def probe(python: str, cwd, *args, env=None):
    (cwd / "probe_module.py").write_text(PROBE)
    return subprocess.run([python, "-m", "probe_module", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


@pytest.mark.parametrize("what", ["ok", "code", "message", "raise", "signal"])
def test_a_run_is_what_python_dash_m_gives(client, tmp_path, what):
    env = {"OPENAI_PROBE": "runtime-variable"}
    real = probe(sys.executable, tmp_path, what, "x", "--y", env=env)
    forked = probe(client, tmp_path, what, "x", "--y", env=env)
    assert (forked.returncode, forked.stdout, forked.stderr) == (real.returncode, real.stdout, real.stderr)
    assert forked.stdout.startswith("out __main__ probe_module.py ['x', '--y']")
    expected = {"ok": 0, "code": 3, "message": 1, "raise": 1, "signal": -signal.SIGTERM}[what]
    assert forked.returncode == expected


def test_forked_only_when_the_import_time_environment_is_the_same(client, tmp_path):
    assert probe(client, tmp_path, "executable").stdout.splitlines()[-1] == client
    changed = probe(client, tmp_path, "executable", env={"HF_HUB_OFFLINE": "flipped"})
    assert changed.returncode == 0 and changed.stdout.splitlines()[-1] == sys.executable


def test_a_killed_client_takes_its_child(client, tmp_path):
    (tmp_path / "probe_module.py").write_text(PROBE)
    pid_file = tmp_path / "pid"
    proc = subprocess.Popen([client, "-m", "probe_module", "sleep", str(pid_file)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert child != proc.pid  # the module ran in the server's fork, not in the client
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and os.path.exists(f"/proc/{child}") and not zombie(child):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{child}") or zombie(child)


def zombie(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split(") ")[1].startswith("Z")
    except OSError:
        return True
