"""One definition per method (anemoned/protocol/methods.py): the README's
table, the daemon's handlers and anemonectl's requests must all agree with
it, and the generic decoder names the bad field."""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest

from anemoned import destinations, notify, protocol
from anemoned.api.dispatch import HANDLERS
from anemoned.protocol import ErrorCode, RpcError
from anemoned.protocol import methods as m
from anemoned.protocol.fields import decode, encode
from anemoned.protocol.table import render
from anemoned import service  # noqa: F401  (registers every handler)
from anemonectl import cli

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_method_table_is_the_rendered_one():
    text = README.read_text()
    start = text.index("| method | params | result |")
    end = text.index("\n\n", start) + 1
    assert text[start:end] == render(), "run: python -m anemoned.protocol.table, and paste it into the README"


def test_every_method_has_exactly_one_handler_taking_its_params_class():
    assert set(HANDLERS) == set(protocol.METHODS)
    for name, handler in HANDLERS.items():
        annotation = list(inspect.signature(handler).parameters.values())[1].annotation
        assert annotation == protocol.METHODS[name].params.__name__, name


# One command line per RPC method anemonectl sends (a few send several).
COMMANDS = [
    ["status"], ["key", "generate", "--force"], ["key", "show"],
    ["dest", "add", "d", "--host", "h", "--user", "u", "--remote-path", "/r", "--max-delete", "3", "--trust-host-key",
     "--max-age", "2d", "--verify-download"],
    ["dest", "list"], ["dest", "show", "d"], ["dest", "edit", "d", "--port", "2222", "--enabled"],
    ["dest", "remove", "d"], ["dest", "enable", "d"], ["dest", "disable", "d"],
    ["dest", "trust", "d", "--host-key-fingerprint", "SHA256:" + "A" * 43], ["dest", "test", "d", "--create-path"],
    ["dest", "schedule", "d", "--weekly", "mon", "02:00", "--skip-missed", "--verify"],
    ["sync", "d", "--dry-run", "--allow-empty", "bob", "--allow-deletes", "--full"],
    ["job", "list", "--dest", "d", "--limit", "5"], ["job", "show", "1"], ["job", "wait", "1"], ["job", "cancel", "1"],
    ["restore", "d", "--user", "bob", "--to", "/srv/x", "--path", "a/b", "--version", "v", "--overwrite"],
    ["restore", "d", "--user", "bob", "--list"], ["dest", "versions", "d"], ["verify", "d", "--user", "bob"],
    ["dest", "usage", "d"], ["dest", "notify", "add", "d", "--on", "always"], ["dest", "notify", "list", "d"],
    ["dest", "notify", "remove", "d", "2"], ["dest", "notify-test", "d"], ["dest", "ping-url", "d"],
]


class Recorder:
    """Stands in for the socket: records what would be sent, answers like
    a daemon whose jobs have ended."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def call(self, method: str, params: dict[str, Any], timeout_s: float | None = None) -> Any:
        self.sent.append((method, params))
        if method in ("dest.list", "job.list", "dest.notify.list", "dest.versions"):
            return []
        return {"id": 1, "state": "succeeded", "ok": True, "name": "d", "host_key_fingerprint": None, "removed": True,
                "destination": "d", "policy": "always", "url": "x", "ping_url": None, "results": [], "entries": [],
                "source": "x", "truncated": False, "public_key": "k", "fingerprint": "f", "path": "p", "kind": "sync"}


def test_the_cli_sends_every_method_with_params_the_daemon_decodes(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("secret\n" * 10))
    recorder = Recorder()
    for argv in COMMANDS:
        args = cli.build_parser().parse_args([*argv, "--json"])
        try:
            args.fn(cli.Ctl(recorder, True), args)
        except (KeyError, TypeError):
            pass  # the fake answers are thin; what was sent is what counts
    sent_methods = {method for method, _ in recorder.sent}
    assert sent_methods == set(protocol.METHODS)
    for method, params in recorder.sent:
        decoded = decode(protocol.METHODS[method].params, params)  # raises on any drift
        assert encode(decoded) == params


def test_the_cli_refuses_to_send_params_of_another_method():
    with pytest.raises(TypeError):
        cli.Ctl(Recorder(), False).call("dest.show", m.JobId(id=1))


def test_each_destination_default_is_the_protocols():
    adding = {f.name: f.default for f in dataclasses.fields(m.DestAdd)}
    stored = {f.name: f.default for f in dataclasses.fields(destinations.Destination)}
    for name in m.PLAIN_DEST_FIELDS:
        if stored[name] is not dataclasses.MISSING:  # the value type has a default of its own: the same one
            assert stored[name] == adding[name], name
    assert destinations.DEFAULT_KEY_FILE == m.DEFAULT_KEY_FILE
    assert notify.POLICIES == m.POLICIES and notify.MAX_URL_LEN == m.MAX_URL_LEN


def test_dest_edit_changes_only_what_is_given():
    assert encode(decode(m.DestEdit, {"name": "d"})) == {"name": "d"}
    assert decode(m.DestEdit, {"name": "d"}).port is None
    assert decode(m.DestAdd, {"name": "d", "host": "h", "user": "u", "remote_path": "/r"}).port == 22


@pytest.mark.parametrize("cls, raw, field, problem", [
    (m.DestAdd, {"name": "d", "user": "u", "remote_path": "/r"}, "host", "is required"),
    (m.DestAdd, {"name": "d", "host": "h", "user": "u", "remote_path": "/r", "port": 0}, "port", "must be from 1 to 65535"),
    (m.DestAdd, {"name": "d", "host": "h", "user": "u", "remote_path": "/r", "port": True}, "port",
     "must be a whole number"),
    (m.DestTest, {"name": "d", "create_path": "yes"}, "create_path", "must be true or false"),
    (m.DestName, {"name": "x" * 257}, "name", "must be at most 256 characters"),
    (m.Sync, {"destination": "d", "allow_empty": ["a", 1]}, "allow_empty", "must be a list of strings"),
    (m.DestSchedule, {"name": "d", "schedule": [], "kind": "sync"}, "schedule", "must be an object"),
    (m.DestSchedule, {"name": "d", "schedule": {}, "kind": "backup"}, "kind", "must be sync or verify"),
    (m.NotifyAdd, {"name": "d", "url": "u", "policy": "never"}, "policy",
     "must be one of failure, recovery, always"),
    (m.NoParams, {"surprise": 1}, "surprise", "unknown parameter"),
    (m.JobId, {"id": 1, "extra": None}, "extra", "unknown parameter"),
])
def test_the_decoder_names_the_bad_field(cls, raw, field, problem):
    with pytest.raises(RpcError) as info:
        decode(cls, raw)
    err = info.value
    assert (err.code, err.data, err.message) == (ErrorCode.INVALID_PARAMS, {"field": field}, f"{field}: {problem}")


def test_null_is_absent():
    assert decode(m.JobList, {"destination": None, "limit": None}) == m.JobList()
    with pytest.raises(RpcError):
        decode(m.JobId, {"id": None})
