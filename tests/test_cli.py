"""The two command lines in front of a person: every failure is one line that says what to do (no
traceback, no gRPC log lines), and the CLI forgives option order and missing defaults."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from agentnet_client.cli.output import width
from agentnet_server import pki
from tests.conftest import ServerProc

BIN = pathlib.Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_line(r: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The failure is exactly one line on stderr, with the given words, and no traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    assert len(lines) == 1, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "agentnet"), *args], capture_output=True, text=True, env=env, timeout=timeout)


def server_cli(*args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "agentnet-server"), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a black-holing proxy)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(sock.getsockname()[1])
    done.set()
    t.join(5)
    for c in accepted:
        c.close()
    sock.close()


def test_server_start_up_failures_are_one_line(certs: pki.CertsDir, tmp_path: pathlib.Path) -> None:
    base = ["serve", "--certs", str(certs.root), "--db", f"sqlite:///{tmp_path / 'a.db'}"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = server_cli(*base, "--grpc-addr", f"127.0.0.1:{port}", "--http-addr", "off")
        one_line(r, f"cannot listen on 127.0.0.1:{port}", "in use", "--grpc-addr")
        r = server_cli(*base, "--grpc-addr", "127.0.0.1:0", "--http-addr", f"127.0.0.1:{port}")
        one_line(r, f"cannot listen on 127.0.0.1:{port}", "in use", "--http-addr")
    r = server_cli(*base, "--grpc-addr", "50051", "--http-addr", "off")
    one_line(r, "'50051' has no host", "HOST:PORT")
    closed = free_port()
    r = server_cli(
        "serve",
        "--certs",
        str(certs.root),
        "--db",
        f"postgresql://agentnet:s3cret@127.0.0.1:{closed}/agentnet",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "off",
    )
    line = one_line(r, "cannot use the database", "is PostgreSQL running")
    assert "s3cret" not in line
    # --debug shows the rest.
    r = server_cli("--debug", *base, "--grpc-addr", "50051")
    assert "Traceback" in r.stderr
    r = server_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("agentnet-server ")


def test_client_failures_are_one_line_with_a_hint(
    make_server, certs: pki.CertsDir, tmp_path: pathlib.Path, silent_listener: int
) -> None:  # type: ignore[no-untyped-def]
    server: ServerProc = make_server(http_addr="127.0.0.1:0")
    env = dict(
        os.environ,
        AGENTNET_SERVER=server.addr,
        AGENTNET_DEVICE_DIR=str(certs.device_dir("laoxing-vps")),
        AGENTNET_CACHE_DIR=str(tmp_path / "caches"),
    )
    env.pop("AGENTNET_AGENT", None)
    assert cli(env, "register", "laoxing").returncode == 0
    assert cli(env, "join", "ops", "--create").returncode == 0
    for i in range(3):
        assert cli(env, "send", "ops", f"m{i}").returncode == 0

    one_line(cli(env, "task", "create", "x", "--assignee", "laoxing", "--due", "tomorrow"), "--due", "ISO 8601")
    # A reader that has gone away (`| head -1`) is not an error and prints nothing.
    for args in (["history", "ops"], ["--json", "tail", "--timeout", "20"]):
        read, write = os.pipe()
        os.close(read)
        r = subprocess.run(
            [str(BIN / "agentnet"), *args], stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=60
        )
        os.close(write)
        assert r.returncode == 0 and r.stderr == "", (args, r.stderr)

    # Wrong CA: a device of another network.
    other = pki.CertsDir(tmp_path / "other-certs")
    pki.ensure_server(other, [])
    pki.issue_device(other, "stranger")
    one_line(cli(env, "--device-dir", str(other.device_dir("stranger")), "agents"), "does not trust", "ca.pem")
    # Nothing listening, the REST port instead of the gRPC one, a name not in the certificate.
    one_line(cli(env, "agents", "--server", f"127.0.0.1:{free_port()}"), "connection refused", "AGENTNET_SERVER")
    one_line(cli(env, "agents", "--server", f"127.0.0.1:{server.http_port}"), "not with gRPC over TLS")
    one_line(cli(env, "agents", "--server-name", "wrong.example"), "does not name 'wrong.example'", "make certs HOST=")
    # A server that accepts TCP and never answers: given up after connect_timeout, not 22 s later.
    r = cli(env, "agents", "--server", f"127.0.0.1:{silent_listener}", "--connect-timeout", "1")
    one_line(r, "no answer from", "within 1 s")
    # tail with the server down says so (and keeps trying until --timeout).
    r = cli(env, "tail", "--agent", "laoxing", "--server", f"127.0.0.1:{free_port()}", "--timeout", "4")
    assert "waiting for the server" in r.stderr and "connection refused" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    # --debug shows the details.
    r = cli(env, "--debug", "agents", "--server", f"127.0.0.1:{free_port()}")
    assert "Traceback" in r.stderr


def test_forgiving_cli(make_server, certs: pki.CertsDir, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    server: ServerProc = make_server()
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTNET_")}
    env = dict(
        base,
        AGENTNET_SERVER=server.addr,
        AGENTNET_DEVICE_DIR=str(certs.device_dir("xiaoxing-mac")),
        AGENTNET_CACHE_DIR=str(tmp_path / "caches"),
        AGENTNET_CONFIG_DIR=str(tmp_path / "config"),
    )
    assert cli(env, "register", "xiaoxing", "--name", "小邢", "--role", "DevOps").returncode == 0
    other = dict(env, AGENTNET_DEVICE_DIR=str(certs.device_dir("laoxing-vps")))
    assert cli(other, "register", "laoxing-the-elder", "--name", "老邢老邢", "--role", "运维").returncode == 0
    # Global options after the subcommand, as SKILL.md tells agents to write them.
    r = cli(env, "join", "dev-team", "--create", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["newly_joined"] is True, r.stderr
    assert cli(env, "send", "dev-team", "hello 世界", "--json").returncode == 0
    r = cli(env, "agents", "--json")
    assert {a["id"] for a in json.loads(r.stdout)} == {"xiaoxing", "laoxing-the-elder"}
    # Columns line up on screen although CJK characters take two cells; no colour into a pipe.
    r = cli(env, "agents")
    assert "\033[" not in r.stdout
    lines = r.stdout.splitlines()
    rows = [line for line in lines if line.startswith(("ID", "xiaoxing", "laoxing"))]
    assert len(rows) == 3, r.stdout
    starts = {width(line[: line.index(word)]) for line, word in zip(rows, ("STATE", "offline", "offline"), strict=True)}
    assert len(starts) == 1, r.stdout
    assert "one-shot commands" in r.stdout  # why everyone shows offline
    # The device's only agent is the default for tail and for offline history.
    r = cli(env, "tail", "--count", "1", "--skip", "agent_list", "--skip", "presence", "--skip", "caught_up", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["message"]["content"] == "hello 世界"
    r = cli(env, "history", "dev-team", "--offline")
    assert r.returncode == 0 and "hello 世界" in r.stdout, r.stderr
    r = cli(env, "--version")
    assert r.returncode == 0 and r.stdout.startswith("agentnet ")
    # doctor: every check passes here; a wrong name is found and the fix is given.
    r = cli(env, "doctor")
    assert r.returncode == 0 and "✗" not in r.stdout and "clock" in r.stdout, r.stdout + r.stderr
    r = cli(env, "doctor", "--server-name", "vps.example.test", "--json")
    checks = {c["name"]: c for c in json.loads(r.stdout)}
    assert r.returncode == 1 and checks["server name"]["ok"] is False
    assert "make certs HOST=vps.example.test" in checks["server name"]["fix"]
    # Profiles: the connection comes from the current profile when no flag or variable gives it.
    bare = dict(base, AGENTNET_CONFIG_DIR=env["AGENTNET_CONFIG_DIR"], AGENTNET_CACHE_DIR=env["AGENTNET_CACHE_DIR"])
    r = cli(bare, "profile", "add", "home", "--server", server.addr, "--device-dir", env["AGENTNET_DEVICE_DIR"])
    assert r.returncode == 0, r.stderr
    assert (
        cli(bare, "profile", "add", "nowhere", "--server", f"127.0.0.1:{free_port()}", "--device-dir", ".").returncode
        == 0
    )
    assert stat.S_IMODE((tmp_path / "config" / "profiles.json").stat().st_mode) == 0o600
    r = cli(bare, "agents", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 2, r.stderr
    one_line(cli(bare, "agents", "--profile", "nowhere"), "device folder")
    assert cli(bare, "profile", "use", "nowhere").returncode == 0
    r = cli(bare, "profile", "list", "--json")
    assert json.loads(r.stdout)["current"] == "nowhere"
    one_line(cli(bare, "agents", "--profile", "missing"), "no profile 'missing'")
    # Shell completion (argcomplete) knows the commands.
    out = tmp_path / "completions"
    r = cli(
        dict(env, _ARGCOMPLETE="1", COMP_LINE="agentnet ta", COMP_POINT="11", _ARGCOMPLETE_STDOUT_FILENAME=str(out)),
    )
    assert set(out.read_text().split("\v")) == {"tail", "task"}


def test_a_device_certificate_near_expiry_is_announced(tmp_path: pathlib.Path) -> None:
    cd = pki.CertsDir(tmp_path / "certs")
    pki.ensure_server(cd, [])
    pki.issue_device(cd, "short-lived", days=5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTNET_")}
    env["AGENTNET_DEVICE_DIR"] = str(cd.device_dir("short-lived"))
    r = cli(env, "sign", "--agent", "ops", "--group", "g", "--id", "m-1", "hello")  # offline: no server needed
    assert r.returncode == 0 and json.loads(r.stdout)["content"] == "hello", r.stderr
    warning = r.stderr.strip().splitlines()
    assert len(warning) == 1 and "expires in 5 days" in warning[0] and "--device short-lived --force" in warning[0]


NOWHERE = {"AGENTNET_DEVICE_DIR": "/nonexistent/agentnet-device"}  # a value that passes would fail on this


@pytest.mark.parametrize(
    "args",
    [
        ["--connect-timeout", "nan", "agents"],
        ["agents", "--connect-timeout", "inf"],
        ["agents", "--connect-timeout", "-inf"],
        ["agents", "--connect-timeout", "0"],
        ["tail", "--timeout", "nan"],
        ["tail", "--timeout", "1e999"],
        ["tail", "--timeout", "0"],
        ["bridge", "--turn-timeout", "inf"],
        ["bridge", "--turn-timeout", "-5"],
        ["bridge", "--rate-per-minute", "nan"],
    ],
)
def test_float_options_refuse_non_finite_and_non_positive_values(args: list[str]) -> None:
    """`--connect-timeout nan` passed the `<= 0` check and turned the dial watchdog off (NaN compares
    false to everything; infinity waits for ever); 0 meant the default. Every option that takes seconds
    or a rate refuses them before anything runs: one line naming the option, exit 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTNET_")} | NOWHERE
    option = next(a for a in args if a.startswith("--"))
    r = cli(env, *args)
    line = one_line(r, option, "--help")
    assert r.returncode == 2 and "device" not in line, line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["send", "g", "x", "--payload", '{"a": NaN}'], "NaN"),
        (["send", "g", "x", "--payload", '{"a": 1e400}'], "64-bit float"),
        (["dm", "b", "x", "--payload", '{"a":' * 40 + "1" + "}" * 40], "levels deep"),
        (["sign", "--agent", "a", "--group", "g", "x", "--payload", '{"a": "\\ud800"}'], "Unicode"),
        (["sign", "--agent", "a", "--group", "g", "x", "--payload", "[1]"], "JSON object"),
        (["send", "g", "x", "--auto-hops", "17"], "at most 16"),
        (["send", "g", "x", "--reply-to", str(2**63)], "at most"),
        (["history", "g", "--after", "9" * 5000], "too large"),
        (["read", "1", str(2**64)], "at most"),
        (["task", "done", "t1", "--version", str(2**63)], "at most"),
        (
            ["sign-task", "--title", "t", "--assignee", "a", "--agent", "a", "--due", "0001-01-01T00:00:00+01:00"],
            "range",
        ),
        (["sign-task", "--title", "t", "--assignee", "a", "--agent", "a", "--due", "2026-12-01T18:00:00"], "zone"),
    ],
)
def test_values_the_wire_cannot_carry_are_refused_locally(args: list[str], words: str) -> None:
    """int64 fields, Timestamps and Struct payloads have limits; a value past them failed deep in
    protobuf (`Value out of range`, `DecodeError`, `OverflowError`) or was sent to be refused."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTNET_")} | NOWHERE
    r = cli(env, *args)
    line = one_line(r, words, f"`agentnet {args[0]}")
    assert r.returncode == 2 and "unexpected" not in line, line
    r = cli(env, "--json", *args)
    err = json.loads(one_line(r))["error"]
    assert r.returncode == 2 and err["status"] == "INVALID_ARGUMENT" and words in err["message"], err
