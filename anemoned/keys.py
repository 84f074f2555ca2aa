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
import errno
import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

KEY_COMMENT = "anemone-rclone"
KEY_NAME = "rclone_key"
_SECRETS_LOCK = threading.Lock()


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


#: A private key file is a few KiB; anything larger is not one, and is never
#: read (a key_file of /dev/zero once made the daemon read 1 GiB).
KEY_FILE_MAX_BYTES = 64 * 1024


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _check_file(path: Path, st: os.stat_result, real: str, certs: Path, uid: int) -> None:
    """read_key_file's rules for a file with stat st whose real path is real."""
    if stat.S_ISLNK(st.st_mode):
        raise KeyFileError(f"{path} is a symbolic link; give the key file itself")
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path} is not a regular file")
    if st.st_size > KEY_FILE_MAX_BYTES:
        raise KeyFileError(f"{path} is {st.st_size} bytes: too large for a private key "
                           f"(at most {KEY_FILE_MAX_BYTES // 1024} KiB)")
    if _under(real, os.path.realpath(certs)):
        return
    if st.st_uid != uid:
        raise KeyFileError(f"{path} is owned by uid {st.st_uid}, not by the daemon's user (uid {uid}); "
                           f"a key file must be in {certs}/ or owned by the daemon's user with mode 0600")
    if st.st_mode & 0o077:
        raise KeyFileError(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; a key file outside {certs}/ "
                           "must have mode 0600 (chmod 600 it)")


def read_key_file(path: Path, certs: Path, uid: int | None = None) -> bytes:
    """The contents of a private key file the daemon may use; raises
    KeyFileError saying why not.

    A key file must be a regular file of at most KEY_FILE_MAX_BYTES, and
    either live under certs/ (0700, the daemon's own) or be owned by the
    daemon's user (uid, default: ours) with no group or other permission
    bits. Without that rule any key the daemon can read (another user's
    ~/.ssh/id_ed25519, say) could be used to log in as its owner.

    Never blocks: a FIFO, a device or a symbolic link is refused from
    lstat() before any open, and the open itself is O_NOFOLLOW|O_NONBLOCK
    and checked again with fstat() (the path may have been swapped in
    between). "Under certs/" is judged on the path the kernel actually
    opened (/proc/self/fd), so `certs/../..` or a symlinked directory
    inside certs/ does not count. Blocking file I/O: call it off the event
    loop.
    """
    uid = os.geteuid() if uid is None else uid
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        raise KeyFileError(f"{path} does not exist (create one with `anemonectl key generate`)") from None
    except OSError as exc:
        raise KeyFileError(f"{path} cannot be read: {exc.strerror}") from None
    # Judged first on the path as it resolves now (so that the operator is
    # told the real reason even for a file the daemon cannot open), then
    # again on what was really opened.
    _check_file(path, before, os.path.realpath(path), certs, uid)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyFileError(f"{path} is a symbolic link; give the key file itself") from None
        raise KeyFileError(f"{path} cannot be read: {exc.strerror}") from None
    try:
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            opened = ""  # no /proc: judged as outside certs/, the stricter rule
        _check_file(path, os.fstat(fd), opened, certs, uid)
        chunks, size = [], 0
        while size <= KEY_FILE_MAX_BYTES:  # the file may grow after fstat
            chunk = os.read(fd, KEY_FILE_MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > KEY_FILE_MAX_BYTES:
            raise KeyFileError(f"{path} is too large for a private key (at most {KEY_FILE_MAX_BYTES // 1024} KiB)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_private_key(path: Path, certs: Path, uid: int | None = None) -> str | None:
    """A problem with the private key file at path (read_key_file's rules,
    then: an OpenSSH or PEM private key without a passphrase), or None if
    usable. Blocking file I/O: call it off the event loop."""
    try:
        data = read_key_file(path, certs, uid)
    except KeyFileError as err:
        return str(err)
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
        # Callers run in threads: two first encryptions at once must not
        # each make a key (a password encrypted with the loser's key could
        # never be decrypted again).
        with _SECRETS_LOCK:
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
