import pytest

from anemoned.protocol import ErrorCode
from anemonectl import cli, dest_options


@pytest.mark.parametrize("code, exit_code", [
    (ErrorCode.NOT_FOUND, 4),
    (ErrorCode.INVALID_PARAMS, 2),
    (ErrorCode.CONFLICT, 2),
    (ErrorCode.PARSE_ERROR, 2),
    (ErrorCode.OPERATION_FAILED, 1),
    (ErrorCode.INTERNAL_ERROR, 1),
    (ErrorCode.PERMISSION_DENIED, 3),
    (ErrorCode.UNAVAILABLE, 3),
])
def test_exit_code_for_rpc_errors(code, exit_code):
    assert cli.exit_code_for(code) == exit_code


@pytest.mark.parametrize("argv, schedule", [
    (["--off"], {"kind": "off"}),
    (["--interval", "30m"], {"kind": "interval", "every": "30m"}),
    (["--daily", "02:30"], {"kind": "daily", "time": "02:30"}),
    (["--weekly", "sun", "03:00"], {"kind": "weekly", "day": "sun", "time": "03:00"}),
    (["--monthly", "31", "04:00"], {"kind": "monthly", "day": "31", "time": "04:00"}),
    (["--cron", "*/15 * * * *"], {"kind": "cron", "expr": "*/15 * * * *"}),
])
def test_schedule_options_become_one_schedule_object(argv, schedule):
    args = cli.build_parser().parse_args(["dest", "schedule", "x", *argv])
    assert cli.schedule_from_args(args) == schedule


def test_json_is_accepted_before_and_after_the_command():
    p = cli.build_parser()
    assert p.parse_args(["--json", "status"]).json is True
    assert p.parse_args(["dest", "show", "x", "--json"]).json is True


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["dest", "add", "x"])
    assert info.value.code == 2


def test_monitoring_commands_take_no_url_on_the_command_line():
    parser = cli.build_parser()
    args = parser.parse_args(["dest", "notify", "add", "offsite", "--on", "recovery"])
    assert (args.name, args.on) == ("offsite", "recovery")
    assert parser.parse_args(["dest", "notify", "add", "offsite"]).on == "failure"
    with pytest.raises(SystemExit):
        parser.parse_args(["dest", "notify", "add", "offsite", "ntfys://ntfy.sh/topic"])
    with pytest.raises(SystemExit):
        parser.parse_args(["dest", "ping-url", "offsite", "https://hc-ping.com/uuid"])
    assert parser.parse_args(["dest", "notify", "remove", "offsite", "2"]).id == 2
    assert parser.parse_args(["dest", "ping-url", "offsite", "--off"]).off is True
    assert dest_options.fields(parser.parse_args(["dest", "edit", "offsite", "--max-age", "36h"])) == {"max_age": "36h"}
