"""README.md as written: the walk-through (three devices, then a fourth enrolled without moving
its key), the grpcurl check and the REST section run on one machine, against a fresh server.

The commands come from README.md's code blocks, in order. `# on the VPS` / `# on the MacBook` /
... lines say where a command runs: each device is a shell with its own home folder (the VPS runs
in a copy of the checkout, with `.venv` activated). Only what cannot happen on one machine is
translated, and nothing else:

- host names and ports: vps.example.com:50051, 0.0.0.0:50051 and 127.0.0.1:50051 become the
  free loopback port this test uses, 127.0.0.1:8443 another one (the health port is off);
- `scp [options] FILES HOST:DEST` copies into that device's home folder;
- `<task-id>` is the id the last `task create` printed;
- a command commented "Ctrl-C" keeps running in the background; it gets SIGINT when a
  `# on ..., after Ctrl-C` section of its device starts, or at the end.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV = pathlib.Path(sys.prefix)
DEVICES = {"VPS": "vps", "MacBook": "macbook", "Mac Mini": "macmini", "new device": "air"}


def sections() -> dict[str, list[str]]:
    """README's `sh` code blocks by the `##`/`###` heading they are under."""
    out: dict[str, list[str]] = {}
    heading = ""
    for part in re.split(r"^(#{2,3} .*)$", (ROOT / "README.md").read_text(), flags=re.M):
        if re.match(r"^#{2,3} ", part):
            heading = part.lstrip("#").strip()
            continue
        out.setdefault(heading, []).extend(re.findall(r"^```sh\n(.*?)^```$", part, flags=re.M | re.S))
    return out


@dataclass
class Step:
    devices: list[str]
    command: str
    comment: str = ""
    after_ctrl_c: bool = False


def steps(block: str, default: str = "vps") -> list[Step]:
    out: list[Step] = []
    devices, after = [default], False
    lines = block.replace("\\\n", " ").splitlines()
    for line in lines:
        text = line.strip()
        header = re.match(r"^# on (the |every )?([A-Za-z ]+?)(,.*|\s*\(.*)?$", text)
        if header:
            name = header.group(2).strip()
            devices = ["vps", "macbook", "macmini"] if header.group(1) == "every " else [DEVICES[name]]
            after = "after Ctrl-C" in (header.group(3) or "")
            continue
        if not text or text.startswith("#"):
            continue
        comment = ""
        m = re.search(r"\s{2,}# (.*)$", text)
        if m:
            comment, text = m.group(1), text[: m.start()]
        out.append(Step(devices, re.sub(r"\s+", " ", text), comment, after))
        after = False
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Machine:
    name: str
    home: pathlib.Path
    cwd: pathlib.Path
    exports: list[str] = field(default_factory=list)
    background: list[tuple[str, subprocess.Popen[str], pathlib.Path]] = field(default_factory=list)


class Walk:
    def __init__(self, tmp: pathlib.Path) -> None:
        self.grpc, self.http = free_port(), free_port()
        checkout = tmp / "checkout"
        checkout.mkdir()
        for name in ("Makefile", "setup.cfg", "pyproject.toml"):
            shutil.copy2(ROOT / name, checkout / name)
            os.utime(checkout / name, (0, 0))  # never newer than .venv's stamp: make installs nothing
        (checkout / ".venv").symlink_to(VENV)
        self.machines: dict[str, Machine] = {}
        for name in ("vps", "macbook", "macmini", "air"):
            home = tmp / f"home-{name}"
            home.mkdir()
            self.machines[name] = Machine(name, home, checkout if name == "vps" else home)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTNET_", "VIRTUAL_ENV"))}
        self.env.update(
            PATH=f"{VENV / 'bin'}:{self.env.get('PATH', '/usr/bin:/bin')}",  # `. .venv/bin/activate`
            VIRTUAL_ENV=str(VENV),
            AGENTNET_HTTP_ADDR=f"127.0.0.1:{self.http}",
            AGENTNET_HEALTH_ADDR="off",
            NO_COLOR="1",
        )
        self.task_id = ""
        self.outputs: list[tuple[str, str, str]] = []  # (device, command, stdout)

    def translate(self, command: str) -> str:
        for old in ("vps.example.com:50051", "0.0.0.0:50051", "127.0.0.1:50051"):
            command = command.replace(old, f"127.0.0.1:{self.grpc}")
        command = command.replace("127.0.0.1:8443", f"127.0.0.1:{self.http}")
        if "<task-id>" in command:
            assert self.task_id, "README uses <task-id> before a task was created"
            command = command.replace("<task-id>", self.task_id)
        scp = re.match(r"^scp((?: -\w+)*) (.+) (\w+):(\S+)$", command)
        if scp:
            opts, files, host, dest = scp.groups()
            command = f"cp{opts} {files} {self.machines[host].home / dest}"
        return command

    def shell(self, m: Machine, command: str) -> list[str]:
        script = "set -e\n" + "\n".join(m.exports) + f"\n{command}\n"
        return ["bash", "-c", script]

    def env_for(self, m: Machine) -> dict[str, str]:
        return dict(self.env, HOME=str(m.home))

    def run(self, step: Step) -> None:
        for name in step.devices:
            m = self.machines[name]
            if step.after_ctrl_c:
                self.stop(m)
            command = self.translate(step.command)
            if command.startswith("export "):
                m.exports.append(command)
                continue
            if "Ctrl-C" in step.comment:
                self.start(m, command)
                continue
            r = subprocess.run(
                self.shell(m, command), cwd=m.cwd, env=self.env_for(m), capture_output=True, text=True, timeout=120
            )
            assert r.returncode == 0, f"on {name}: {step.command}\n{r.stdout}\n{r.stderr}"
            assert "Traceback" not in r.stderr, r.stderr
            self.outputs.append((name, step.command, r.stdout))
            found = re.search(r"\bt-[0-9a-f]{16}\b", r.stdout)
            if "task create" in command and found:
                self.task_id = found.group(0)

    def start(self, m: Machine, command: str) -> None:
        log = m.home / f"background-{len(m.background)}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                self.shell(m, f"exec {command}" if command.startswith("agentnet") else command),
                cwd=m.cwd,
                env=self.env_for(m),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        m.background.append((command, proc, log))
        deadline = time.monotonic() + 90
        if "make run" in command:  # wait until the server takes connections
            while not _accepts(self.grpc):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        else:  # wait for its first output
            while not log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "no output from " + command
                time.sleep(0.1)

    def stop(self, m: Machine) -> None:
        """Ctrl-C: wait until the output has been quiet for a second (bounded), then SIGINT."""
        for command, proc, log in m.background:
            size, quiet_since, deadline = -1, time.monotonic(), time.monotonic() + 15
            while time.monotonic() < deadline and time.monotonic() - quiet_since < 1.0:
                now = log.stat().st_size
                if now != size:
                    size, quiet_since = now, time.monotonic()
                time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGINT)
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError(f"{command} did not stop on Ctrl-C:\n{log.read_text()}") from None
            text = log.read_text()
            assert code in (0, 130, -signal.SIGINT, 2), f"{command} ended with {code}:\n{text}"
            assert "Traceback" not in text, text
            self.outputs.append((m.name, command, text))
        m.background.clear()

    def stop_all(self) -> None:
        for name in ("macbook", "macmini", "air", "vps"):  # the server last
            self.stop(self.machines[name])

    def output(self, device: str, command: str) -> str:
        found = [out for name, cmd, out in self.outputs if name == device and cmd.startswith(command)]
        assert found, f"no output of {command!r} on {device}"
        return found[-1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_readme_walk_through_and_rest_section_work_as_written(tmp_path: pathlib.Path) -> None:
    blocks = sections()
    walk = Walk(tmp_path)
    plan = [step for block in blocks["Walk-through: three devices, three agents"] for step in steps(block)]
    enroll = [step for block in blocks["Enrolling without moving keys"] for step in steps(block)]
    grpcurl = steps(blocks["Quick start"][1])
    rest = steps(blocks["REST with curl"][0])
    assert len(plan) > 20 and enroll and grpcurl and rest
    try:
        for step in [*plan, *enroll, *grpcurl, *rest]:
            walk.run(step)
    finally:
        walk.stop_all()

    # What the README says happens, happened.
    for device in ("vps", "macbook", "macmini"):
        assert "✗" not in walk.output(device, "agentnet doctor")
    agents = walk.output("macbook", "agentnet agents")
    assert all(name in agents for name in ("小邢", "老邢", "小金")) and "one-shot commands" in agents
    inbox = walk.output("vps", "agentnet inbox --unread")
    assert "mention" in inbox and "task_assigned" in inbox and "xiaoxing" in inbox
    assert "[accepted]" in walk.output("vps", "agentnet task accept")
    tail = walk.output("macbook", "agentnet tail")
    assert "key rotation started" in tail
    assert "key rotation started" in walk.output("macbook", "agentnet history dev-team --offline")
    air = walk.machines["air"].home / "agentnet-device"
    assert {p.name for p in air.iterdir()} >= {"key.pem", "cert.pem", "ca.pem"}
    assert stat.S_IMODE((air / "key.pem").stat().st_mode) == 0o600
    health = [out for _, cmd, out in walk.outputs if cmd.startswith(".venv/bin/grpcurl") and "Health" in cmd]
    assert health and "SERVING" in health[0]
    # Every REST call answered with JSON that is not an error.
    rest_outputs = [out for name, cmd, out in walk.outputs if cmd.startswith("curl --cert")]
    rest_outputs.append(walk.output("vps", "agentnet --device-dir certs/devices/ci-runner"))  # sign | curl
    assert len(rest_outputs) == 7
    for out in rest_outputs:
        body = json.loads(out)
        assert not (isinstance(body, dict) and {"code", "message"} <= set(body)), body
    assert "deploy 42 is green" in rest_outputs[4]
    events = walk.output("vps", "curl -N")
    assert "event: " in events and "data: " in events
