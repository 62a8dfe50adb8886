"""SIGTERM/SIGINT to `bertbatch local` and `bertbatch predict --local` reach their child, and the
CLI exits only after the child has, with its status (bertbatch/jobs/child_process.py).

The CLI runs as a real process (signals cannot be sent to the test's own), its child is a tiny
script standing in for the trainer / predict entrypoint: it records the signal it gets in a file,
then waits for the test's go-ahead before it exits, so every step is synchronized on files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertbatch_contract import job

from .conftest import FIXTURES
from .helpers import put_local_run

REPO = Path(__file__).resolve().parents[2]
HANG_GUARD_SECONDS = 60  # only a bound against a hang: every wait ends on a file long before

# The child: ready once its handlers are in; on a signal, records it and exits (75, as the
# trainer does on SIGTERM) once the test allows it. Files appear whole (written, then renamed).
CHILD = """
import os, pathlib, signal, sys, time
folder = pathlib.Path(sys.argv[1])
def record(name, text):
    (folder / "partial").write_text(text)
    (folder / "partial").rename(folder / name)
def stop(signum, frame):
    record("signal", signal.Signals(signum).name)
    while not (folder / "release").exists():
        time.sleep(0.01)
    sys.exit(75)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
record("ready", str(os.getpid()))
while True:
    signal.pause()
"""

# The CLI with its child's command line replaced by CHILD.
DRIVER = """
import sys
from bertbatch.jobs import trainer_process as local
from bertbatch.cli import cli
from bertbatch.commands import predict
child = [sys.executable, "-c", {child!r}, {folder!r}]
local.command = lambda **_: child
predict.predict_argv = lambda *_: child
cli(sys.argv[1:], prog_name="bertbatch")
"""

TRAIN, DEV = str(FIXTURES / "sst2" / "train.tsv"), str(FIXTURES / "sst2" / "dev.tsv")
COMMANDS = {
    "local": ["local", "--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab",
              str(FIXTURES / "vocab.txt"), "--no-prepare", "--run-name", "sig"],
    "predict": ["predict", "--local", "--model", "done-run", "--input", "rows.jsonl", "--shards", "2"],
}


def local_model_and_input(directory: Path) -> None:
    """What `predict --local --model done-run --input rows.jsonl` checks before it starts."""
    run = directory / put_local_run("done-run", accuracy=0.9, learning_rate=1e-4)
    (run / "config.json").write_text('{"model_type": "bert"}')
    (directory / "rows.jsonl").write_text(json.dumps({"sentence": "good"}) + "\n")


def wait_for(path: Path, cli: subprocess.Popen) -> bool:
    """True once `path` exists; False if the CLI exited first (or on the hang guard)."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not path.exists():
        if cli.poll() is not None or time.monotonic() > deadline:
            return path.exists()
        time.sleep(0.01)
    return True


def kill_leftovers(cli: subprocess.Popen, folder: Path) -> None:
    """The child first: it may hold the CLI's output open."""
    ready = folder / "ready"
    if ready.exists():
        try:
            os.kill(int(ready.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass
    if cli.poll() is None:
        cli.kill()
    cli.wait()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_signal_reaches_the_child_and_the_cli_exits_after_it(tmp_path, monkeypatch, command, sig):
    monkeypatch.chdir(tmp_path)
    local_model_and_input(tmp_path)
    folder = tmp_path / "child"
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    output = tmp_path / "cli.out"  # a file, not a pipe: nothing to drain, nothing to block on
    with output.open("w") as out:
        cli = subprocess.Popen([sys.executable, "-c", DRIVER.format(child=CHILD, folder=str(folder)),
                                *COMMANDS[command]], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_for(folder / "ready", cli), output.read_text()
        cli.send_signal(sig)
        assert wait_for(folder / "signal", cli), f"the child never got {sig.name}: {output.read_text()}"
        assert (folder / "signal").read_text() == sig.name
        assert cli.poll() is None  # still waiting: the child has not exited yet
        child_pid = int((folder / "ready").read_text())
        assert os.getpgid(child_pid) == child_pid != os.getpgid(cli.pid)  # the child leads its own group
        (folder / "release").touch()
        # the child's status (for predict: no second shard started, its child would never exit)
        assert cli.wait(timeout=HANG_GUARD_SECONDS) == job.EXIT_INTERRUPTED, output.read_text()
        assert "exited with code 75" in output.read_text()
    finally:
        kill_leftovers(cli, folder)


def test_a_forwarded_stop_after_a_clean_shard_starts_no_other(tmp_path, monkeypatch):
    """A shard that exits 0 after the forwarded signal: the next shard does not start."""
    from bertbatch.commands import predict
    from bertbatch.jobs import child_process

    started: list[int] = []

    def run(argv, **_):
        started.append(argv[0])
        return child_process.ChildExit(status=0, interrupted=True)

    monkeypatch.setattr(child_process, "run", run)
    monkeypatch.setattr(predict, "predict_argv", lambda values, shard, pid: [shard])
    assert predict.run_local({"shards": 3}, "pid") == job.EXIT_INTERRUPTED
    assert started == [0]


@pytest.mark.parametrize(("returncode", "status"), [(0, 0), (75, 75), (-signal.SIGTERM, 143), (-signal.SIGKILL, 137)])
def test_a_child_killed_by_a_signal_gives_128_plus_its_number(returncode, status):
    from bertbatch.jobs.child_process import exit_status

    assert exit_status(returncode) == status


def test_a_command_that_cannot_start_is_one_line(tmp_path):
    from bertbatch.core.errors import BertBatchError
    from bertbatch.jobs import child_process

    with pytest.raises(BertBatchError, match=f"cannot start {tmp_path / 'missing'}: "):
        child_process.run([str(tmp_path / "missing")], env=os.environ)


def test_handlers_are_restored_afterwards():
    from bertbatch.jobs import child_process

    before = {sig: signal.getsignal(sig) for sig in child_process.FORWARDED}
    assert child_process.run([sys.executable, "-c", "pass"], env=os.environ).status == 0
    assert {sig: signal.getsignal(sig) for sig in child_process.FORWARDED} == before



def test_off_the_main_thread_the_child_keeps_the_callers_group():
    """Signals are handled on the main thread only: there the child must still get a terminal's."""
    import threading

    from bertbatch.jobs import child_process

    found: list[int] = []

    def run() -> None:
        script = "import os, sys; sys.exit(0 if os.getpgrp() == int(sys.argv[1]) else 1)"
        found.append(child_process.run([sys.executable, "-c", script, str(os.getpgrp())], env=os.environ).status)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=HANG_GUARD_SECONDS)
    assert found == [0]
