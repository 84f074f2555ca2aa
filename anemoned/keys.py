"""The daemon's SSH key pair and its secrets key, both under certs/.

- certs/rclone_key (0600, OpenSSH format, Ed25519) and rclone_key.pub with
  comment `anemone-rclone`; `--force` keeps the previous pair as
  rclone_key.old / rclone_key.old.pub.
- certs/secrets.key (0600): the Fernet key that encrypts destination
  passwords at rest in the state database.

Every file is written to a temporary name and renamed, so a crash never
leaves half a key.
"""
from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

KEY_COMMENT = "anemone-rclone"
KEY_NAME = "rclone_key"


class KeyFileError(Exception):
    """A key file is missing, unreadable or not what it should be."""


@dataclass(frozen=True)
class PublicKey:
    line: str  # "ssh-ed25519 AAAA... anemone-rclone"
    fingerprint: str  # "SHA256:..."


def fingerprint_of_blob(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def fingerprint_of_line(line: str) -> str:
    """Fingerprint of "type base64 [comment]" (authorized_keys / known_hosts form)."""
    return fingerprint_of_blob(base64.b64decode(line.split()[1]))


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write to a temporary name and rename, with `mode` from the first byte
    on (0600 unless said otherwise): a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".partial")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def rfc4716(line: str) -> str:
    """A public key line ("type base64 [comment]") in RFC 4716 form, as
    `ssh-keygen -e` prints it: what ProFTPD's SFTPAuthorizedUserKeys reads.
    Lines are at most 72 characters (RFC 4716 3.3); the comment, if any,
    is quoted with its own quotes and backslashes escaped."""
    parts = line.split(None, 2)
    blob = base64.b64encode(base64.b64decode(parts[1], validate=True)).decode()
    out = ["---- BEGIN SSH2 PUBLIC KEY ----"]
    if len(parts) == 3 and parts[2].strip():
        comment = parts[2].strip().replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'Comment: "{comment[:60]}"')
    out += [blob[i:i + 70] for i in range(0, len(blob), 70)]
    out.append("---- END SSH2 PUBLIC KEY ----")
    return "\n".join(out) + "\n"


def generate_key(certs: Path, force: bool) -> PublicKey:
    """Create the key pair; raises FileExistsError when one exists and not force."""
    private, public = certs / KEY_NAME, certs / f"{KEY_NAME}.pub"
    if private.exists():
        if not force:
            raise FileExistsError(str(private))
        os.replace(private, certs / f"{KEY_NAME}.old")
        if public.exists():
            os.replace(public, certs / f"{KEY_NAME}.old.pub")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    line = f"{line} {KEY_COMMENT}"
    write_atomically(private, pem)
    write_atomically(public, (line + "\n").encode(), 0o644)
    return PublicKey(line, fingerprint_of_line(line))


def show_key(certs: Path) -> PublicKey:
    """The public key; raises FileNotFoundError when there is none."""
    line = (certs / f"{KEY_NAME}.pub").read_text().strip()
    return PublicKey(line, fingerprint_of_line(line))


def check_private_key(path: Path) -> str | None:
    """A problem with the private key file at path, or None if usable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return f"{path} does not exist (create one with `anemonectl key generate`)"
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror}"
    if len(data) > 64 * 1024:
        return f"{path} is not a private key"
    for load in (serialization.load_ssh_private_key, serialization.load_pem_private_key):
        try:
            load(data, password=None)
            return None
        except TypeError:
            return f"{path} is protected by a passphrase; the daemon needs a key without one"
        except (ValueError, UnsupportedAlgorithm):
            continue
    return f"{path} is not a private key in OpenSSH or PEM format"


class Secrets:
    """Encrypts destination passwords with a key kept in certs/secrets.key."""

    def __init__(self, certs: Path) -> None:
        self.path = certs / "secrets.key"

    def _fernet(self) -> Fernet:
        if not self.path.exists():
            write_atomically(self.path, Fernet.generate_key())
        return Fernet(self.path.read_bytes().strip())

    def encrypt(self, secret: str) -> bytes:
        return self._fernet().encrypt(secret.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet().decrypt(token).decode()
        except InvalidToken:
            raise KeyFileError(f"a stored password cannot be decrypted with {self.path}; set it again with "
                            "`anemonectl dest edit NAME --password-stdin`") from None
