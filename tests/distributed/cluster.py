"""A localhost cluster for the multi-worker tests: N processes of `multiworker_checks.py`, each with its own TF_CONFIG
on free ports, their output in files (no pipe to fill). Every process this starts is killed (SIGKILL, by its pid)
when the cluster ends, fails or times out: a worker whose peer died would wait in a collective forever."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).with_name("multiworker_checks.py")


def free_ports(n: int) -> list[int]:
    """n ports the kernel reports free (all bound at once, so they differ)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


class Cluster:
    """`Cluster(n, out, args).wait(timeout)` -> {index: (returncode, stdout, stderr)}; `extra_env` maps a worker
    index to extra environment variables (e.g. KILL_AT). With `reference`, one more process (index n, no TF_CONFIG)
    runs the same checks alone, at the same time: the single-process reference."""

    def __init__(self, n: int, out: Path, args: list[str], extra_env: dict | None = None, name: str = "run",
                 reference: bool = False):
        self.n, self.out, self.name = n, Path(out), name
        ports = free_ports(n)
        self.procs, self.logs = [], []
        for i in range(n + int(reference)):
            env = dict(os.environ, TF_CONFIG=tf_config(ports, i) if i < n else "", KERAS_BACKEND="tensorflow",
                       TMPDIR=str(self.out / f"scratch_{name}_w{i}"), **(extra_env or {}).get(i, {}))
            Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
            stdout = open(self.out / f"{name}_w{i}.out", "w")
            stderr = open(self.out / f"{name}_w{i}.err", "w")
            self.logs.append((stdout, stderr))
            self.procs.append(subprocess.Popen([sys.executable, str(SCRIPT), str(self.out), *args], env=env,
                                               stdout=stdout, stderr=stderr))

    def wait(self, timeout: float) -> dict:
        """Waits for every worker. As soon as one exits with an error the rest are killed (they would wait for it in
        a collective), as a cluster manager restarting the job would; everything still running at `timeout` too."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                codes = [p.poll() for p in self.procs]
                if all(c is not None for c in codes) or any(c not in (None, 0) for c in codes):
                    break
                time.sleep(0.2)
        finally:
            self.kill()
        return {i: (p.returncode, *self.output(i)) for i, p in enumerate(self.procs)}

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
        for p in self.procs:
            p.wait()
        for stdout, stderr in self.logs:
            stdout.close()
            stderr.close()

    def output(self, i: int) -> tuple[str, str]:
        return ((self.out / f"{self.name}_w{i}.out").read_text(), (self.out / f"{self.name}_w{i}.err").read_text())


def results(outputs: dict) -> dict:
    """{(check, tag): RESULT line} over every worker's stdout."""
    found = {}
    for _, stdout, _ in outputs.values():
        for line in stdout.splitlines():
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
                found[(result.pop("check"), result.pop("tag"))] = result
    return found
