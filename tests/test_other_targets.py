"""The tap piped into a third-party Singer target, and catalog discovery, as any Singer user runs them."""

from __future__ import annotations

import json

from tests.helpers import STREAM, TARGET_JSONL, revoked_after, run_pipe, run_tap, tap_config
from tests.intercom_simulator import IntercomSimulator


def test_every_record_arrives_in_target_jsonl(tmp_path):
    (tmp_path / "out").mkdir()
    with IntercomSimulator(conversations=300, seed=5) as sim:
        target, tap_returncode = run_pipe(
            tmp_path, tap_config(sim), {"destination_path": str(tmp_path / "out")}, loader=TARGET_JSONL
        )
        assert tap_returncode == 0
        assert target.returncode == 0, target.stderr[-2000:]
        [output] = (tmp_path / "out").glob(f"{STREAM}*.jsonl")
        records = [json.loads(line) for line in output.read_text().splitlines()]
        assert sorted(r["intercom_id"] for r in records) == sorted(sim.ids())
        truth = sim.truth()
        assert all(r["data"] == truth[r["intercom_id"]] for r in records)
        assert json.loads(target.stdout.splitlines()[-1])["bookmarks"][STREAM]["replication_key_value"]


def test_a_failed_runs_last_state_is_an_ordinary_state_to_target_jsonl(tmp_path):
    """The tap's failure line rides beside the last STATE's value: a third-party target keeps only the value."""
    (tmp_path / "out").mkdir()
    with IntercomSimulator(conversations=400, seed=6) as sim:
        sim.on_request = revoked_after(250)
        target, tap_returncode = run_pipe(
            tmp_path, tap_config(sim), {"destination_path": str(tmp_path / "out")}, loader=TARGET_JSONL
        )

    assert tap_returncode == 1
    assert target.returncode == 0, target.stderr[-2000:]
    assert "extractor_failed" not in target.stdout
    assert json.loads(target.stdout.splitlines()[-1])["bookmarks"][STREAM]["replication_key_value"]


def test_discovery_describes_the_stream_with_its_keys_and_schema(tmp_path):
    with IntercomSimulator(conversations=10) as sim:
        run = run_tap(tap_config(sim), None, "--discover")
    catalog = json.loads(run.stdout)
    [stream] = [s for s in catalog["streams"] if s["tap_stream_id"] == STREAM]
    assert stream["key_properties"] == ["intercom_id"]
    assert stream["replication_key"] == "updated_at"
    properties = stream["schema"]["properties"]
    assert set(properties) == {"intercom_id", "title", "state", "open", "read", "created_at", "updated_at", "data"}
    assert properties["updated_at"]["format"] == "date-time"
