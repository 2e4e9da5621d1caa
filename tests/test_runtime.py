"""Each tap owns its rate governor, server clock and counters (runtime.Runtime): two taps never share a budget."""

from __future__ import annotations

from intercom_conversation_shared.schema_files import STREAM_NAME
from tap_intercom_conversation.tap import TapIntercomConversation
from tests.helpers import tap_config
from tests.intercom_simulator import IntercomSimulator


def test_two_taps_in_one_process_do_not_share_a_budget():
    with IntercomSimulator(conversations=5, seed=11) as sim:
        first = TapIntercomConversation(config=tap_config(sim), setup_mapper=False)
        second = TapIntercomConversation(config=tap_config(sim), setup_mapper=False)
        stream = first.streams[STREAM_NAME]
        conversation = sim.ids()[0]
        for _ in range(3):  # real HTTP: each answer reports the window and Intercom's Date
            stream.fetch(
                stream.build_prepared_request(
                    method="GET", url=f"{stream.url_base}/conversations/{conversation}", headers=stream.http_headers
                )
            )

    assert all(s.runtime is first.runtime for s in first.streams.values())  # one budget per tap, for all its streams
    assert first.runtime is not second.runtime
    assert first.runtime.governor.limit is not None and first.runtime.clock.floor() is not None
    assert first.runtime.concurrency.latency is not None
    assert second.runtime.governor.limit is None  # the second tap has heard nothing: its budget is its own
    assert second.runtime.clock.floor() is None and second.runtime.concurrency.latency is None
    assert second.runtime.governor.max_in_flight == 0 and second.runtime.stats.retries == 0
