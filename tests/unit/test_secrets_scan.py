"""The search for obscured passwords (testbed/secrets_scan.py) finds what
rclone itself produces: a test that could not find a leak proves nothing."""
from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

from testbed.secrets_scan import leaks, obscured_in, reveal

RCLONE = str(Path(sys.executable).parent / "rclone")


def obscure(secret: str) -> str:
    return subprocess.run([RCLONE, "obscure", "-"], input=secret, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_reveal_agrees_with_rclone_and_finds_every_obscured_form(tmp_path):
    for secret in ("pw-" + secrets.token_urlsafe(12), "x" * 1024, "spaces and ünïcode €", "short1"):
        tokens = {obscure(secret) for _ in range(3)}
        assert len(tokens) == 3  # randomised: grepping for one form would miss the others
        for token in tokens:
            assert reveal(token) == secret.encode()
            assert subprocess.run([RCLONE, "reveal", "--", token], capture_output=True, text=True,
                                  check=True).stdout.strip() == secret
        token = tokens.pop()
        glued = json.dumps({"msg": f"Setting pass=AAAA{token} for dest", "other": "x"}).encode()
        assert obscured_in(glued, secret) == [token.encode()]
        (tmp_path / "log").write_bytes(b"noise\n" + glued + b"\n")
        (tmp_path / "clean").write_bytes(b"nothing to see " * 100)
        assert leaks([tmp_path / "log", tmp_path / "clean"], secret) == {str(tmp_path / "log"): f"obscured {token}"}
        (tmp_path / "plain").write_text(f"pass={secret}")
        assert leaks([tmp_path / "plain"], secret)[str(tmp_path / "plain")] == "plain"
