"""OpenClaw: `agentnet bridge`, `agentnet openclaw setup|doctor` and `agentnet skill` (implemented in
agentnet_client.openclaw.commands)."""

from __future__ import annotations

from ..openclaw.commands import register

__all__ = ["register"]
