"""The supervisor behind `make up` and `make prod`: one graceful stop per child, whatever stops it;
and the embedded PostgreSQL forgetting holders that were killed.

Real processes: a supervisor started the way a terminal starts a foreground job (its own
process group) and children that write down every signal they receive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import signal, sys, time
log = open(sys.argv[1], "a", buffering=1)
exit_code, obey = int(sys.argv[2]), sys.argv[3] == "obey"

def on_signal(signum, frame):
    log.write(signal.Signals(signum).name + "\n")
    if obey:
        time.sleep(0.5)  # a second signal, if one came, would be written down meanwhile
        sys.exit(0)

for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, on_signal)
log.write("ready\n")
deadline = time.monotonic() + (0.5 if exit_code else 60)
while time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(exit_code)
"""

SUPERVISOR = (
    "import json, sys; from platform_ai.run_local import supervise; "
    "sys.exit(supervise(json.loads(sys.argv[1]), 'banner', grace=float(sys.argv[2])))"
)


def start(tmp_path, children, *, grace=30.0, ignore_sigint=False):
    """Start the supervisor over `children` (name -> (exit code, "obey" | "ignore")); wait until all are ready."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    logs = {name: tmp_path / f"{name}.log" for name in children}
    commands = [[sys.executable, str(script), str(logs[name]), str(code), mode] for name, (code, mode) in children.items()]

    def as_foreground_job():
        os.setpgid(0, 0)  # what a shell does for a foreground job: Ctrl-C goes to this whole group
        if ignore_sigint:  # what `cmd &` in a non-interactive shell does
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, json.dumps(commands), str(grace)],
        cwd=ROOT, preexec_fn=as_foreground_job, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    wait_for(lambda: all(log.exists() and "ready" in log.read_text() for log in logs.values()))
    return supervisor, logs


def wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def signals(log: Path) -> list[str]:
    return log.read_text().split()[1:]


@pytest.fixture
def cleanup():
    started = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_ctrl_c_in_a_terminal_gives_each_child_exactly_one_graceful_stop(tmp_path, cleanup):
    supervisor, logs = start(tmp_path, {"web": (0, "obey"), "worker": (0, "obey")})
    cleanup.append(supervisor)
    os.killpg(supervisor.pid, signal.SIGINT)  # the terminal signals the whole foreground group

    assert supervisor.wait(timeout=15) == 0
    assert {name: signals(log) for name, log in logs.items()} == {"web": ["SIGTERM"], "worker": ["SIGTERM"]}


def test_ctrl_c_stops_a_supervisor_started_with_sigint_ignored(tmp_path, cleanup):
    supervisor, logs = start(tmp_path, {"web": (0, "obey"), "worker": (0, "obey")}, ignore_sigint=True)
    cleanup.append(supervisor)
    os.kill(supervisor.pid, signal.SIGINT)

    assert supervisor.wait(timeout=15) == 0
    assert [signals(log) for log in logs.values()] == [["SIGTERM"], ["SIGTERM"]]


def test_one_child_exiting_stops_the_others_and_its_status_is_returned(tmp_path, cleanup):
    supervisor, logs = start(tmp_path, {"web": (0, "obey"), "worker": (3, "obey")})
    cleanup.append(supervisor)

    assert supervisor.wait(timeout=15) == 3
    assert signals(logs["web"]) == ["SIGTERM"]
    assert signals(logs["worker"]) == []
    assert "exited (status 3): stopping the others" in supervisor.stdout.read()


def test_a_child_that_ignores_the_stop_is_killed_after_the_grace_period(tmp_path, cleanup):
    supervisor, logs = start(tmp_path, {"web": (0, "obey"), "stuck": (0, "ignore")}, grace=1.0)
    cleanup.append(supervisor)
    os.kill(supervisor.pid, signal.SIGTERM)

    assert supervisor.wait(timeout=15) == 128 + signal.SIGKILL
    assert signals(logs["web"]) == ["SIGTERM"]
    assert signals(logs["stuck"]) == ["SIGTERM"]


def test_a_second_ctrl_c_stops_the_children_at_once(tmp_path, cleanup):
    supervisor, logs = start(tmp_path, {"stuck": (0, "ignore")})
    cleanup.append(supervisor)
    os.kill(supervisor.pid, signal.SIGINT)
    wait_for(lambda: signals(logs["stuck"]) == ["SIGTERM"])
    os.kill(supervisor.pid, signal.SIGINT)
    wait_for(lambda: signals(logs["stuck"]) == ["SIGTERM", "SIGINT"])

    assert supervisor.wait(timeout=15) == 128 + signal.SIGKILL  # still ignoring: killed after 5 s, not 30


def test_children_are_stopped_when_the_supervisor_is_killed(tmp_path, cleanup):
    supervisor, logs = start(tmp_path, {"web": (0, "obey"), "worker": (0, "obey")})
    cleanup.append(supervisor)
    supervisor.kill()
    supervisor.wait()

    wait_for(lambda: all(signals(log) == ["SIGTERM"] for log in logs.values()))


def test_killed_holders_of_the_embedded_postgres_are_forgotten(tmp_path):
    from platform_ai.embedded_pg import forget_dead_holders

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / ".handle_pids.json").write_text(json.dumps([os.getpid(), gone.pid]))

    assert forget_dead_holders(tmp_path) == [gone.pid]
    assert json.loads((tmp_path / ".handle_pids.json").read_text()) == [os.getpid()]
    assert forget_dead_holders(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_whose_supervisor_died_before_it_started_does_not_start(tmp_path):
    """The supervisor can die between fork and the child's request to follow it: the child then
    belongs to another parent and must not go on to serve (even with a SIGTERM handler inherited)."""
    import functools

    from platform_ai.run_local import _die_with_parent

    marker = tmp_path / "started"
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # as the supervisor's own handler
    try:
        orphan = subprocess.run([sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
                                preexec_fn=functools.partial(_die_with_parent, os.getpid() + 10**6))
        followed = subprocess.run([sys.executable, "-c", "pass"],
                                  preexec_fn=functools.partial(_die_with_parent, os.getpid()))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert orphan.returncode == 128 + signal.SIGTERM and not marker.exists()
    assert followed.returncode == 0
