from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from anemoned import metrics
from anemoned.destinations import Destination
from anemoned.store import Store

SYNC = {"state": "failed", "started_at": "2026-11-28T02:30:00+00:00", "finished_at": "2026-11-28T02:30:04+00:00",
        "stats": None}


def dest(**kw) -> Destination:
    return Destination(name="d0", host="h", port=22, user="u", auth="key", key_file="k", remote_path="/r",
                       enabled=True, host_key=None, **kw)


def test_samples_leave_out_what_is_not_known():
    assert metrics.destination_samples(dest(), False, None, None, None) == {
        "anemone_destination_enabled": 1.0, "anemone_destination_overdue": 0.0}


def test_a_failed_sync_without_stats_still_has_its_duration():
    s = metrics.destination_samples(dest(), True, SYNC, None, None)
    assert s["anemone_last_sync_success"] == 0 and s["anemone_last_sync_duration_seconds"] == 4
    assert s["anemone_destination_overdue"] == 1 and "anemone_last_success_timestamp_seconds" not in s


def test_the_file_parses_back_with_conventional_names(tmp_path):
    store = Store(tmp_path / "state.db")
    store.insert_destination(dest(created_at="2026-11-01T00:00:00+00:00").to_row())
    store.insert_job({"destination": "d0", "kind": "sync", "state": "succeeded", "dry_run": False, "trigger": "manual",
                      "queued_at": SYNC["started_at"], "started_at": SYNC["started_at"],
                      "finished_at": SYNC["finished_at"],
                      "stats": {"files_transferred": 2, "bytes_transferred": 300, "files_deleted": 1,
                                "duration_s": 3.5}})
    path = tmp_path / "anemone.prom"
    metrics.write(path, metrics.collect(store, lambda d: None))
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert families["anemone_last_sync_transferred_bytes"].samples[0].value == 300
    assert families["anemone_last_sync_duration_seconds"].samples[0].value == 3.5
    assert families["anemone_last_success_timestamp_seconds"].samples[0].value == 1795833004.0
    for family in families.values():
        assert family.type == "gauge" and not family.name.endswith("_total")
        assert all(s.labels == {"destination": "d0"} for s in family.samples)
    assert isinstance(metrics.collect(store, lambda d: None), CollectorRegistry)
