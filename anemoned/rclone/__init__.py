"""How rclone is invoked: pure builders, failure interpretation, thin runner.

Safety rules, for every feature:
- No value a person typed is ever put into an rclone connection string or
  a shell command. The SFTP backend is configured only through
  RCLONE_CONFIG_DEST_<OPTION> environment variables, whose values rclone
  never parses for further options; the remote name is the constant
  DEST_REMOTE, so a path after `dest:` is always just a path.
- The environment is built from nothing: inherited RCLONE_* variables,
  SSH_AUTH_SOCK and the rest never reach rclone.
- shell_type is set explicitly (no detection commands run on the server).
- Passwords travel only in the environment, obscured as rclone requires.

The package: argv.py (pure builders of backend options, environments,
flags and remote paths), runner.py (run(), RcloneResult, log parsing and
redaction), settle.py (when a run's outcome is known before rclone
exits), failures.py (FailureClass and the messages a failed run
records). Everything is re-exported here, so callers write `rclone.X`.
"""
from __future__ import annotations

from .argv import (DEST_REMOTE, OPENSSH_UPLOAD_CHUNK, QUICK_IDLE_TIMEOUT_S, SRC_REMOTE, SftpAccess, base_env,
                   dest_path, global_args, job_retry_args, option_env, quick_args, sftp_options, space_list,
                   upload_chunk_size)
from .failures import (AUTH_FAILED, DISK_FULL, HOST_KEY_MISMATCH, HOST_KEY_UNKNOWN, PATH_MISSING, PATH_NOT_WRITABLE,
                       SESSION_REFUSED, TIMEOUT, UNKNOWN, UNREACHABLE, FailureClass, classify, error_messages,
                       failure_message, messages_of)
from .runner import (DIE_WITH_PARENT, LINE_LIMIT, REDACTED, SECRET_OPTIONS, RcloneResult, obscure, parse_log_line,
                     redact, run, secret_values, stop)
from .settle import Settlement, settles_clean

__all__ = [
    "DEST_REMOTE", "OPENSSH_UPLOAD_CHUNK", "QUICK_IDLE_TIMEOUT_S", "SRC_REMOTE", "SftpAccess", "base_env", "dest_path",
    "global_args", "job_retry_args", "option_env", "quick_args", "sftp_options", "space_list", "upload_chunk_size",
    "AUTH_FAILED", "DISK_FULL", "HOST_KEY_MISMATCH", "HOST_KEY_UNKNOWN", "PATH_MISSING", "PATH_NOT_WRITABLE",
    "SESSION_REFUSED", "TIMEOUT", "UNKNOWN", "UNREACHABLE", "FailureClass", "classify", "error_messages",
    "failure_message", "messages_of",
    "DIE_WITH_PARENT", "LINE_LIMIT", "REDACTED", "SECRET_OPTIONS", "RcloneResult", "obscure", "parse_log_line",
    "redact", "run", "secret_values", "Settlement", "settles_clean", "stop",
]
