"""A destination's link options (anemoned/link_options.py): the bwlimit
timetable is parsed into our own normal form or refused naming the field,
and parallelism stays within what OpenSSH's defaults accept."""
import pytest

from anemoned import link_options
from anemoned.link_options import LinkOptions, parse_bwlimit
from anemoned.errors import InvalidField
from anemoned.protocol.fields import Text, Whole, decode
from anemoned.protocol.methods import DEST_FIELDS, DestEdit


@pytest.mark.parametrize("given, normal", [
    ("2M", "2M"), ("2m", "2M"), ("off", None), ("OFF", None), ("512", "512"), ("1.5G", "1.5G"),
    ("10M:1M", "10M:1M"), ("10M:off", "10M:off"),
    ("08:00,2M 19:00,off", "08:00,2M 19:00,off"),
    ("  08:00,512k   12:00,10M 23:59,off ", "08:00,512K 12:00,10M 23:59,off"),
    ("Mon-00:00,512 Fri-23:59,10M Sat-10:00,1M:off", "Mon-00:00,512 Fri-23:59,10M Sat-10:00,1M:off"),
    ("sun-20:00,off", "Sun-20:00,off"),
])
def test_timetables_in_rclones_form_are_kept_in_a_normal_form(given, normal):
    assert parse_bwlimit(given) == normal
    if normal is not None:
        assert parse_bwlimit(normal) == normal  # the normal form is a fixed point


@pytest.mark.parametrize("bad", [
    "", " ", "0", "0.0", "2X", "-1M", "1e3", "2M 3M", "08:00", "8:00,2M", "24:00,1M", "12:60,1M",
    "08:00,2M 08:00,3M", "Mox-08:00,1M", "08:00,2M,3M", "08:00;2M", "1M:2M:3M", "08:00,2M\n19:00,off",
    "--transfers=99", "2M --bwlimit-file 1", "08:00,2M x", "１M", "2M\x00", "x" * 2000,
    " ".join(f"{h:02d}:00,1M {h:02d}:30,2M" for h in range(24)) + " Mon-01:00,1M" * 20,
])
def test_anything_else_is_refused_naming_bwlimit(bad):
    with pytest.raises(InvalidField) as info:
        parse_bwlimit(bad)
    assert info.value.field == "bwlimit" and info.value.message.startswith("bwlimit: ")


def test_the_sync_flags_carry_the_normal_form_as_one_argument():
    o = LinkOptions.of({"transfers": 3, "checkers": 4, "bwlimit": "08:00,512k 19:00,off"})
    assert o.sync_args() == ["--transfers", "3", "--checkers", "4", "--bwlimit", "08:00,512K 19:00,off"]
    assert LinkOptions.of({}).sync_args() == ["--transfers", str(link_options.DEFAULT_TRANSFERS),
                                              "--checkers", str(link_options.DEFAULT_CHECKERS)]
    assert o.dest_env() == {"RCLONE_CONFIG_DEST_CONNECTIONS": str(link_options.DEFAULT_CONNECTIONS)}


def test_defaults_stay_within_openssh_default_maxstartups():
    d = LinkOptions()
    assert d.connections <= 10 and d.transfers <= d.connections and d.checkers <= d.connections


def test_processes_0_chooses_by_the_servers_distance():
    assert LinkOptions().processes == 0
    assert LinkOptions().processes_for(0.0004) == link_options.LAN_PROCESSES  # loopback or a LAN
    assert LinkOptions().processes_for(0.03) == link_options.MAX_PROCESSES  # across a link
    assert LinkOptions().processes_for(None) == link_options.LAN_PROCESSES  # not measured
    assert LinkOptions(processes=2).processes_for(0.03) == 2  # a setting is kept either way
    assert LinkOptions.of({"processes": 0}).processes == 0


def test_waves_of_handshakes_are_spaced_by_the_longer_of_the_two_measures():
    assert link_options.stagger(0.037) == pytest.approx(0.37)  # ten identification answers
    assert link_options.stagger(0.037, 0.058) == pytest.approx(12 * 0.058)  # a handshake's round trips
    assert link_options.stagger(0.0005, 0.0004) == link_options.STAGGER_MIN_S
    assert link_options.stagger(1.0, 0.6) == link_options.STAGGER_MAX_S


@pytest.mark.parametrize("stored, field", [
    ({"processes": 17}, "processes"), ({"processes": -1}, "processes"),
    ({"connections": 11}, "connections"), ({"connections": 0}, "connections"), ({"transfers": 11}, "transfers"),
    ({"checkers": True}, "checkers"), ({"transfers": "4"}, "transfers"), ({"checkers": -1}, "checkers"),
    ({"transfers": 5, "checkers": 2, "connections": 4}, "transfers"),  # more than connections: only waiting
    ({"transfers": 2, "checkers": 5, "connections": 4}, "checkers"),
    ({"bwlimit": "2M; rm -rf /"}, "bwlimit"),
])
def test_stored_values_are_checked_again_and_as_a_whole(stored, field):
    with pytest.raises(InvalidField) as info:
        LinkOptions.of(stored)
    assert info.value.field == field
    assert "link_error" in link_options.view(stored)  # dest show still works, and says why


def test_an_edit_is_checked_with_what_is_stored():
    stored = link_options.merged({}, {"transfers": 4, "checkers": 2, "connections": 5})
    assert link_options.merged(stored, {"bwlimit": None}) == {**stored, "bwlimit": None}
    with pytest.raises(InvalidField) as info:
        link_options.merged(stored, {"connections": 3})  # below the stored transfers
    assert info.value.field == "transfers"
    assert link_options.view(stored)["bwlimit"] == "off"


def test_rclone_itself_accepts_every_normal_form(tmp_path):
    """What we store is what the real rclone parses (it says the limit it
    refuses a bad one at start with status 2), so a valid-looking value
    never fails a sync at start."""
    import subprocess
    import sys
    from pathlib import Path
    rclone = str(Path(sys.executable).parent / "rclone")
    for given in ("2m", "1.5g", "10M:off", " 08:00,512k  19:00,off", "sun-00:00,512 Fri-23:59,10M:1M"):
        res = subprocess.run([rclone, "lsf", str(tmp_path), "--config", "", "-v", "--bwlimit", parse_bwlimit(given)],
                             capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert res.returncode == 0 and "invalid argument" not in res.stderr, (given, res.stderr)


def test_the_protocol_defines_each_link_field_once_and_says_its_default():
    """The fields are the protocol's (CLI, decoder, README table); their
    bounds and defaults are this module's, and the protocol's docs (the
    CLI's help) say the same defaults."""
    spec = {name: (sp, default, doc) for name, sp, default, doc, _alt in DEST_FIELDS}
    defaults = {"transfers": link_options.DEFAULT_TRANSFERS, "checkers": link_options.DEFAULT_CHECKERS,
                "connections": link_options.DEFAULT_CONNECTIONS, "processes": link_options.DEFAULT_PROCESSES}
    for name in link_options.FIELDS:
        sp, default, doc = spec[name]
        assert default is None  # absent: the running version's default, not a stored copy of it
        assert isinstance(sp, Text if name == "bwlimit" else Whole)
        assert f"(default {defaults.get(name, 'off')})" in doc, name
    assert f"at most {link_options.MAX_CONNECTIONS}" in spec["connections"][2]
    # What 0 processes chooses is said by the protocol (the CLI's help) and
    # by the client's `dest show`, which cannot import this module.
    lan, most = link_options.LAN_PROCESSES, link_options.MAX_PROCESSES
    assert f"at most {most}; 0: {lan} on a LAN, {most} on a link" in spec["processes"][2]
    from anemonectl import render
    assert render.link(link_options.view({})).startswith(f"{lan} (LAN) or {most} (link) rclone processes, each ")


def test_decoded_edits_are_read_and_checked_here():
    fields: dict = {}
    link_options.read_fields(decode(DestEdit, {"name": "d", "transfers": 3, "bwlimit": "off"}), fields)
    assert fields == {"transfers": 3, "bwlimit": None}
    with pytest.raises(InvalidField) as info:
        link_options.read_fields(decode(DestEdit, {"name": "d", "connections": 11}), {})
    assert info.value.field == "connections" and "MaxStartups" in info.value.message
