"""Finding a password in files, in plain and in rclone's obscured form.

rclone "obscures" a password (AES-CTR with a key published in its source,
fs/config/obscure) with a random IV, so the same password has a different
obscured form on every run, and grepping for one form proves nothing. This
module instead decodes every base64url token in a file and reveals it the
way `rclone reveal` does, so any obscured copy of the password is found,
whichever run produced it. The reveal is checked against rclone itself in
tests/unit/test_secrets_scan.py.
"""
from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Iterable, Iterator

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

#: rclone's fixed obscuring key (fs/config/obscure/obscure.go, cryptKey).
_KEY = bytes([
    0x9c, 0x93, 0x5b, 0x48, 0x73, 0x0a, 0x55, 0x4d, 0x6b, 0xfd, 0x7c, 0x63, 0xc8, 0x86, 0xa9, 0x2b,
    0xd3, 0x90, 0x19, 0x8e, 0xb8, 0x12, 0x8a, 0xfb, 0xf4, 0xde, 0x16, 0x2b, 0x8b, 0x95, 0xf6, 0x38,
])
_AES_BLOCK = 16
#: An obscured value is base64url (no padding) of a 16-byte IV plus the
#: ciphertext: at least 22 characters. Standard base64 characters too, in
#: case something re-encoded it.
_TOKEN = re.compile(rb"[A-Za-z0-9_\-+/]{22,}")


def reveal(token: str | bytes) -> bytes | None:
    """What `rclone reveal` prints for token, or None if it cannot be one."""
    text = token.decode() if isinstance(token, bytes) else token
    text = text.replace("+", "-").replace("/", "_")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    if len(raw) <= _AES_BLOCK:
        return None
    decryptor = Cipher(algorithms.AES(_KEY), modes.CTR(raw[:_AES_BLOCK])).decryptor()
    return decryptor.update(raw[_AES_BLOCK:]) + decryptor.finalize()


def obscured_in(data: bytes, secret: str) -> list[bytes]:
    """Every token in data that reveals to secret (also when the token is
    embedded in a longer run of base64 characters)."""
    wanted = secret.encode()
    found = []
    for m in _TOKEN.finditer(data):
        run = m.group()
        # the token may be glued to neighbouring base64 characters: try
        # every start; an obscured value ends where the run ends or at the
        # exact length of IV + secret.
        length = len(base64.urlsafe_b64encode(b"\0" * (_AES_BLOCK + len(wanted))).rstrip(b"="))
        for start in range(0, max(len(run) - length, 0) + 1):
            candidate = run[start:start + length]
            if len(candidate) == length and reveal(candidate) == wanted:
                found.append(candidate)
    return found


def files_under(*roots: Path) -> Iterator[Path]:
    """Every regular file under the roots (or the roots themselves)."""
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink())


def leaks(paths: Iterable[Path], secret: str) -> dict[str, str]:
    """{path: "plain" | "obscured <token>"} for each file holding secret."""
    out: dict[str, str] = {}
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if secret.encode() in data:
            out[str(path)] = "plain"
        else:
            tokens = obscured_in(data, secret)
            if tokens:
                out[str(path)] = f"obscured {tokens[0].decode()}"
    return out
