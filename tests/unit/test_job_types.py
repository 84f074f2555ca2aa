"""Job kinds, triggers and states are str enums whose values are the
strings the store, the logs and the wire carry: these tests hold them to
the strings the README documents and the protocol accepts."""
import json
import re
from pathlib import Path

from anemoned.jobtypes import JobKind, JobState, Trigger
from anemoned.protocol.methods import SCHEDULE_KINDS
from anemoned.schedule_loop import SCHEDULED_KINDS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_triggers_are_the_ones_the_readme_names():
    line = next(l for l in README.splitlines() if l.startswith("`trigger` ("))
    documented = set(re.findall(r"`([a-z-]+)`", line.split(":", 1)[0])) - {"trigger"}
    assert {t.value for t in Trigger} == documented == {"manual", "schedule", "retry", "catch-up"}


def test_kinds_and_states_keep_their_strings():
    assert {k.value for k in JobKind} == {"sync", "restore", "verify", "usage"}
    assert {s.value for s in JobState} == {"queued", "running", "succeeded", "failed", "cancelled", "interrupted"}
    # the kinds `dest schedule --kind` accepts are exactly the scheduled ones
    assert set(SCHEDULE_KINDS) == set(SCHEDULED_KINDS)


def test_a_member_is_its_string_everywhere_it_goes():
    for member in (JobKind.USAGE, Trigger.CATCH_UP, JobState.INTERRUPTED):
        assert f"{member}" == str(member) == member.value
        assert json.dumps(member) == json.dumps(member.value)
    assert JobKind("sync") is JobKind.SYNC and "sync" == JobKind.SYNC  # a row read back from the store


def test_each_kind_is_one_module_with_run_through_the_one_runner():
    import ast
    import importlib
    import inspect
    for kind in JobKind:
        module = importlib.import_module(f"anemoned.{kind.value}_job")
        assert inspect.iscoroutinefunction(module.run), kind
        assert list(inspect.signature(module.run).parameters) == ["ctx"], kind
        # run hands its operation to jobrunner.run_job (the one place that
        # loads the destination, opens the log and builds rclone's environment)
        tree = ast.parse(inspect.getsource(module.run))
        called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert "run_job" in called, kind
    service = (Path(__file__).resolve().parents[2] / "anemoned" / "service.py").read_text()
    for kind in JobKind:
        assert f"JobKind.{kind.name}: self._job({kind.value}_job.run)" in service
