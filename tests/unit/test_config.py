from pathlib import Path

import pytest

from anemoned.config import ConfigError, load_config, parse_config


def test_defaults_follow_the_contract():
    c = parse_config({})
    assert c.data_dir == Path("/srv/anemone")
    assert c.users_dir == Path("/srv/anemone/shares")
    assert c.socket == Path("/run/anemone/anemoned.sock")
    assert (c.socket_group, c.rclone, c.max_concurrent_syncs, c.timezone, c.log_level) == (None, None, 2, None, "info")


def test_users_dir_default_follows_data_dir():
    assert parse_config({"data_dir": "/var/x"}).users_dir == Path("/var/x/shares")


def test_every_problem_is_reported_with_its_key():
    with pytest.raises(ConfigError) as info:
        parse_config({"data_dir": "relative", "max_concurrent_syncs": 0, "timezone": "Mars/Base",
                      "log_level": "loud", "socket_group": "no-such-group-xyz", "colour": "blue"})
    keys = sorted(p.split(":")[0] for p in info.value.problems)
    assert keys == ["colour", "data_dir", "log_level", "max_concurrent_syncs", "socket_group", "timezone"]


@pytest.mark.parametrize("value", [True, "2", 2.5, 65])
def test_max_concurrent_syncs_must_be_a_small_whole_number(value):
    with pytest.raises(ConfigError, match="max_concurrent_syncs"):
        parse_config({"max_concurrent_syncs": value})


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError):
        parse_config(["data_dir"])


def test_yaml_syntax_error_names_the_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data_dir: /x\n  bad: [\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(f)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_metrics_textfile_is_off_by_default_and_must_be_a_prom_file():
    assert parse_config({}).metrics_textfile is None
    assert str(parse_config({"metrics_textfile": "/var/lib/node_exporter/anemone.prom"}).metrics_textfile) \
        == "/var/lib/node_exporter/anemone.prom"
    for bad in ("anemone.prom", "/var/lib/node_exporter/anemone.txt", "/x/.prom", 3):
        with pytest.raises(ConfigError) as err:
            parse_config({"metrics_textfile": bad})
        assert err.value.problems[0].startswith("metrics_textfile: ")


def test_the_sample_config_names_every_key():
    import yaml
    from pathlib import Path
    from anemoned.config import SCHEMA
    sample = yaml.safe_load((Path(__file__).resolve().parents[2] / "etc/anemone/anemoned.yaml").read_text())
    assert set(SCHEMA) - {"users_dir"} <= set(sample)
    parse_config(sample)


def test_the_sample_config_documents_exactly_the_schema_with_its_defaults():
    """Every key of SCHEMA, no other, each at its default and with a
    comment; a derived default (users_dir) appears commented out."""
    import yaml
    from pathlib import Path
    from anemoned.config import SCHEMA
    text = (Path(__file__).resolve().parents[2] / "etc/anemone/anemoned.yaml").read_text()
    sample = yaml.safe_load(text)
    assert sample == {k: spec.default for k, spec in SCHEMA.items() if spec.derived is None}
    lines = text.splitlines()
    for key, spec in SCHEMA.items():
        if spec.derived is not None:
            assert f"# {key}: {spec.derived.format(data_dir=SCHEMA['data_dir'].default)}" in lines, key
            continue
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
        start = at
        while start > 0 and lines[start - 1].startswith("#"):
            start -= 1
        comment = " ".join(lines[start:at]).lower()
        assert comment, f"{key} has no description above it"
        assert ("needs a restart" in comment) == spec.restart_only, key
