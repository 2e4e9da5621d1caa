"""Bad settings, bad state files and bad answers from Intercom, through the real command line.

Each mistake must end the run with exit 1 and exactly one line on stderr,
`tap-intercom-conversation: error: <what, naming the setting or the conversation>`, no traceback and
no other warning or error line; a bad setting or state is found before the first request. When the
run had already emitted records, every STATE it wrote covers only records emitted before it.

The tables run through tests/forkrun.py (main() in a forked process per case, all at once); every
case is still reported as its own test. A few cases of each kind also run through the installed
console script itself (test_the_console_script_...).
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import (
    STREAM,
    ForkRunner,
    assert_fails_with_one_line,
    assert_hands_over_only_its_failure,
    assert_state_never_ahead,
    conversations,
    run_all,
    run_tap,
    tap_config,
)
from tests.intercom_simulator import IntercomSimulator

# ---- settings -------------------------------------------------------------------------------------

MISSING = object()
CONFIG_CASES = {
    # id: (settings changed from a working configuration, or raw file text; expected fragments)
    "token-missing": ({"access_token": MISSING}, ["configuration: access_token is missing"]),
    "token-empty": ({"access_token": ""}, ["configuration: access_token is blank"]),
    "token-blank": ({"access_token": "   "}, ["configuration: access_token is blank"]),
    "token-null": ({"access_token": None}, ["configuration: access_token is not a string"]),
    "token-number": ({"access_token": 918273645}, ["configuration: access_token is not a string"]),
    "token-newline": ({"access_token": "tok_abc\n"}, ["configuration: access_token contains spaces or control"]),
    "start_date-words": ({"start_date": "yesterday"}, ["configuration: start_date 'yesterday' is not an ISO 8601"]),
    "start_date-impossible": ({"start_date": "2024-02-30T00:00:00Z"}, ["start_date '2024-02-30T00:00:00Z' is not"]),
    "start_date-number": ({"start_date": 20240101}, ["configuration: start_date 20240101 is not a string"]),
    "api_url-ftp": ({"api_url": "ftp://api.intercom.io"}, ["api_url 'ftp://api.intercom.io' is not an http(s) URL"]),
    "api_url-no-scheme": ({"api_url": "api.intercom.io"}, ["api_url 'api.intercom.io' is not an http(s) URL"]),
    "api_url-no-host": ({"api_url": "https://"}, ["api_url 'https://' is not an http(s) URL"]),
    "api_url-plain-http": ({"api_url": "http://api.intercom.io"}, ["api_url 'http://api.intercom.io' is plain http"]),
    "api_url-plain-http-lan": ({"api_url": "http://10.1.2.3:8080"}, ["api_url 'http://10.1.2.3:8080' is plain http"]),
    "api_version-future": ({"api_version": "3.0"}, ["configuration: api_version '3.0' is not an Intercom version"]),
    "api_version-2.17": ({"api_version": "2.17"}, ["api_version '2.17' is not an Intercom version"]),
    "api_version-1.x": ({"api_version": "1.4"}, ["configuration: api_version '1.4' has no conversation search"]),
    "api_version-v-prefix": ({"api_version": "v2.16"}, ["api_version 'v2.16' is not an Intercom version"]),
    "api_version-null": ({"api_version": None}, ["configuration: api_version None is not an Intercom version"]),
    "api_version-number": ({"api_version": 2.16}, ["configuration: api_version 2.16 is not a string"]),
    "region-unknown": ({"region": "mars"}, ["configuration: region 'mars' is not one of us, eu, au"]),
    # Plain digits and true/false written as text are typed (Meltano passes its string settings so); other text is not.
    "lookback-text": ({"lookback_window_seconds": "10 min"}, ["lookback_window_seconds '10 min' is not an integer"]),
    "lookback-negative": ({"lookback_window_seconds": -1}, ["lookback_window_seconds -1 is out of range"]),
    "lookback-absurd": ({"lookback_window_seconds": 10**12}, ["lookback_window_seconds 1000000000000 is out of range"]),
    "concurrency-zero": ({"max_concurrent_requests": 0}, ["max_concurrent_requests 0 is out of range (1 to 1000)"]),
    "concurrency-absurd": ({"max_concurrent_requests": 100000}, ["max_concurrent_requests 100000 is out of range"]),
    "concurrency-fraction": ({"max_concurrent_requests": 2.5}, ["max_concurrent_requests 2.5 is not an integer"]),
    "timeout-zero": ({"request_timeout_seconds": 0}, ["request_timeout_seconds 0 is out of range (1 to 600)"]),
    "timeout-negative": ({"request_timeout_seconds": -5}, ["request_timeout_seconds -5 is out of range"]),
    "timeout-absurd": ({"request_timeout_seconds": 1e9}, ["request_timeout_seconds 1000000000.0 is out of range"]),
    "timeout-text": ({"request_timeout_seconds": "60s"}, ["request_timeout_seconds '60s' is not a number"]),
    "parts-text": ({"include_conversation_parts": "yes"}, ["include_conversation_parts 'yes' is not true or false"]),
    "file-not-json": ('{"access_token": "tok_abc",', ["configuration:", "is not valid JSON"]),
    "file-a-list": ('["access_token", "tok_abc"]', ["configuration:", "is not a JSON object"]),
    "file-empty": ("", ["configuration:", "is empty"]),
}


@pytest.fixture(scope="module")
def runner():
    forks = ForkRunner()
    yield forks
    forks.close()


@pytest.fixture(scope="module")
def quiet_sim():
    """A simulator that must never be asked anything: settings are checked before the first request."""
    with IntercomSimulator(conversations=5, seed=11, token="tok_abc") as simulator:
        yield simulator


def _config_case(sim, change, **options):
    if isinstance(change, str):
        return lambda: run_tap(None, config_text=change, **options)
    config = {key: value for key, value in {**tap_config(sim), **change}.items() if value is not MISSING}
    return lambda: run_tap(config, **options)


@pytest.fixture(scope="module")
def config_runs(quiet_sim, runner):
    runs = run_all([_config_case(quiet_sim, change, runner=runner) for change, _ in CONFIG_CASES.values()], workers=8)
    return dict(zip(CONFIG_CASES, runs, strict=True))


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_a_bad_setting_is_one_line_naming_it_before_any_request(case, config_runs, quiet_sim):
    run = config_runs[case]

    cause = assert_fails_with_one_line(run, *CONFIG_CASES[case][1])
    if isinstance(CONFIG_CASES[case][0], str):  # a --config file that is no JSON object: refused before the run
        assert run.stdout == ""
    else:
        assert_hands_over_only_its_failure(run, cause)
    assert quiet_sim.stats["requests"] == 0
    assert "918273645" not in run.stderr  # a token of the wrong type is not shown either


def test_a_missing_settings_file_is_one_line(tmp_path):
    run = run_tap(None, None, "--config", str(tmp_path / "nowhere.json"))

    assert_fails_with_one_line(run, "configuration: cannot read", "nowhere.json")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"access_token": MISSING}, "configuration: access_token is missing"),
        ({"lookback_window_seconds": "x"}, "configuration: lookback_window_seconds 'x' is not an integer"),
        ({"api_url": "http://api.intercom.io"}, "configuration: api_url 'http://api.intercom.io' is plain http"),
    ],
)
def test_discovery_needs_no_settings_and_names_the_bad_one_in_one_warning(change, fragment, quiet_sim):
    config = {key: value for key, value in {**tap_config(quiet_sim), **change}.items() if value is not MISSING}

    run = run_tap(config, None, "--discover")

    assert run.returncode == 0, run.stderr[-2000:]
    catalog = json.loads(run.stdout)
    assert STREAM in [stream["tap_stream_id"] for stream in catalog["streams"]]
    warnings = [line for line in run.stderr.splitlines() if "| WARNING" in line or "| ERROR" in line]
    assert len(warnings) == 1 and fragment in warnings[0], warnings
    assert "Traceback" not in run.stderr
    assert quiet_sim.stats["requests"] == 0


def test_discovery_and_about_work_without_any_settings():
    discovered = run_tap(None, None, "--discover")
    about = run_tap(None, None, "--about", "--format", "json")

    assert discovered.returncode == 0
    assert STREAM in [stream["tap_stream_id"] for stream in json.loads(discovered.stdout)["streams"]]
    assert about.returncode == 0 and "access_token" in json.loads(about.stdout)["settings"]["properties"]
    assert "Traceback" not in discovered.stderr + about.stderr


# ---- state ----------------------------------------------------------------------------------------


def _ours(**bookmark) -> dict:
    return {"bookmarks": {STREAM: bookmark}}


STATE_CASES = {
    "bookmark-garbage": (
        _ours(replication_key="updated_at", replication_key_value="garbage"),
        [f"state: the bookmark of {STREAM} (replication_key_value) 'garbage' is not an ISO 8601 date-time"],
    ),
    "bookmark-number": (
        _ours(replication_key="updated_at", replication_key_value=1700000000),
        ["(replication_key_value) 1700000000 is not an ISO 8601 date-time"],
    ),
    "bookmark-empty": (_ours(replication_key="updated_at", replication_key_value=""), ["'' is not an ISO 8601"]),
    "bookmark-impossible-date": (
        _ours(replication_key="updated_at", replication_key_value="2024-13-45T00:00:00Z"),
        ["'2024-13-45T00:00:00Z' is not an ISO 8601 date-time"],
    ),
    "bookmark-in-the-future": (
        _ours(replication_key="updated_at", replication_key_value="2999-01-01T00:00:00+00:00"),
        ["(2999-01-01T00:00:00+00:00) is in the future"],
    ),
    "bookmark-other-key": (
        _ours(replication_key="created_at", replication_key_value="2024-01-01T00:00:00+00:00"),
        [f"state: the bookmark of {STREAM} is on 'created_at', not updated_at"],
    ),
    "bookmark-without-value": (_ours(replication_key="updated_at"), ["has no replication_key_value"]),
    "stream-state-not-object": ({"bookmarks": {STREAM: "garbage"}}, [f"state: bookmarks.{STREAM} is not an object"]),
    "bookmarks-not-object": ({"bookmarks": ["garbage"]}, ["state: bookmarks is not an object"]),
    "recent-not-map": (
        _ours(
            replication_key="updated_at", replication_key_value="2024-01-01T00:00:00+00:00", recent_conversations=["1"]
        ),
        ["recent_conversations is not a map of conversation id to updated_at"],
    ),
    "recent-bad-value": (
        _ours(
            replication_key="updated_at",
            replication_key_value="2024-01-01T00:00:00+00:00",
            recent_conversations={"1": "yesterday"},
        ),
        ["recent_conversations is not a map of conversation id to updated_at"],
    ),
    "file-a-list": ("[]", ["state:", "is not a JSON object"]),
    "file-not-json": ("bookmarks: garbage", ["state:", "is not valid JSON"]),
    "file-empty": ("", ["state:", "is empty"]),
}


def _state_case(sim, state, **options):
    text = state if isinstance(state, str) else json.dumps(state)
    return lambda: run_tap(tap_config(sim), state_text=text, **options)


@pytest.fixture(scope="module")
def state_runs(quiet_sim, runner):
    runs = run_all([_state_case(quiet_sim, state, runner=runner) for state, _ in STATE_CASES.values()], workers=8)
    return dict(zip(STATE_CASES, runs, strict=True))


@pytest.mark.parametrize("case", list(STATE_CASES))
def test_a_garbage_state_is_one_clear_line_not_a_resync(case, state_runs, quiet_sim):
    run = state_runs[case]

    cause = assert_fails_with_one_line(run, *STATE_CASES[case][1])
    given = STATE_CASES[case][0]
    if isinstance(given, dict):  # not a record, not an empty state: no silent full resync
        assert_hands_over_only_its_failure(run, cause, given)
    else:  # a file that is no state at all: nothing to repeat
        assert run.stdout == ""
    assert quiet_sim.stats["requests"] == 0


# ---- answers from Intercom ------------------------------------------------------------------------

CONVERSATIONS = 300
BAD_INDEX = 200  # in search order: on the second page of the search, after a first STATE
FORBIDDEN = {
    "type": "error.list",
    "request_id": None,
    "errors": [{"code": "api_plan_restricted", "message": "Active subscription needed."}],
}


def _row(field_change):
    """on_payload: change the bad conversation's row in every search answer."""

    def rewrite(route, payload, bad, sim):
        if route == "search":
            payload["conversations"] = [
                field_change(dict(row), sim) if row["id"] == bad else row for row in payload["conversations"]
            ]
        return payload

    return rewrite


def _retrieved(field_change):
    """on_payload: change the bad conversation's GET /conversations/{id} answer."""

    def rewrite(route, payload, bad, sim):
        return field_change(payload, sim) if route == "retrieve" and payload["id"] == bad else payload

    return rewrite


def _without(field):
    def change(row, sim):
        row.pop(field)
        return row

    return change


def _set(field, value):
    def change(row, sim):
        row[field] = value(row, sim) if callable(value) else value
        return row

    return change


def _error(status, code, message, route=None):
    """on_request: Intercom answers this error (to the search, or to GET of the bad conversation)."""

    def answer(method, path, body, bad):
        if route == "retrieve" and path != f"/conversations/{bad}":
            return None
        return status, {"type": "error.list", "request_id": None, "errors": [{"code": code, "message": message}]}

    return answer


PAYLOAD_CASES = {
    # id: (on_payload rewrite or None, on_request answer or None, settings, expected fragments, emits some)
    "search-row-without-id": (_row(_without("id")), None, {}, ["Intercom sent a conversation without an id"], True),
    "search-row-id-not-an-id": (
        _row(_set("id", "../../admin")),
        None,
        {},
        ["whose id is not an id: '../../admin'"],
        True,
    ),
    "search-row-without-updated_at": (
        _row(_without("updated_at")),
        None,
        {},
        ["conversation {bad}: updated_at is missing"],
        True,
    ),
    "search-row-updated_at-text": (
        _row(_set("updated_at", "2024-01-01T00:00:00Z")),
        None,
        {},
        ["conversation {bad}: updated_at '2024-01-01T00:00:00Z' is not unix seconds"],
        True,
    ),
    "search-row-updated_at-milliseconds": (
        _row(_set("updated_at", lambda row, sim: row["updated_at"] * 1000)),
        None,
        {},
        ["conversation {bad}: updated_at", "is not unix seconds"],
        True,
    ),
    "search-row-not-an-object": (
        lambda route, payload, bad, sim: (
            {**payload, "conversations": ["garbage" if row["id"] == bad else row for row in payload["conversations"]]}
            if route == "search"
            else payload
        ),
        None,
        {},
        ["Intercom sent a conversation that is not an object: 'garbage'"],
        True,
    ),
    "search-answer-without-list": (
        lambda route, payload, bad, sim: (
            {"type": "conversation.list", "total_count": 0} if route == "search" else payload
        ),
        None,
        {},
        ["the search answer has no `conversations` list"],
        False,
    ),
    "search-answer-not-an-object": (
        lambda route, payload, bad, sim: ["garbage"] if route == "search" else payload,
        None,
        {},
        ["the search answer is not an object: ['garbage']"],
        False,
    ),
    "search-answer-pages-not-an-object": (
        lambda route, payload, bad, sim: {**payload, "pages": "garbage"} if route == "search" else payload,
        None,
        {},
        ["the search answer's pages 'garbage' is not an object"],
        False,
    ),
    "search-answer-next-not-an-object": (
        lambda route, payload, bad, sim: (
            {**payload, "pages": {**payload["pages"], "next": "garbage"}}
            if route == "search" and "next" in payload["pages"]
            else payload
        ),
        None,
        {},
        ["the search answer's pages.next 'garbage' is not an object"],
        False,
    ),
    "search-answer-total-not-a-count": (
        lambda route, payload, bad, sim: {**payload, "total_count": "many"} if route == "search" else payload,
        None,
        {},
        ["the search answer's total_count 'many' is not a count"],
        False,
    ),
    "search-row-title-number-without-parts": (
        _row(_set("title", 42)),
        None,
        {"include_conversation_parts": False},
        ["conversation {bad}: title 42 is not a string"],
        True,
    ),
    "conversation-title-number": (
        _retrieved(_set("title", 42)),
        None,
        {},
        ["conversation {bad}: title 42 is not a string"],
        True,
    ),
    "conversation-open-text": (
        _retrieved(_set("open", "true")),
        None,
        {},
        ["conversation {bad}: open 'true' is not a boolean"],
        True,
    ),
    "conversation-read-number": (
        _retrieved(_set("read", 1)),
        None,
        {},
        ["conversation {bad}: read 1 is not a boolean"],
        True,
    ),
    "conversation-state-number": (
        _retrieved(_set("state", 3)),
        None,
        {},
        ["conversation {bad}: state 3 is not a string"],
        True,
    ),
    "conversation-created_at-negative": (
        _retrieved(_set("created_at", -1)),
        None,
        {},
        ["conversation {bad}: created_at -1 is not unix seconds"],
        True,
    ),
    "conversation-parts-not-a-list": (
        _retrieved(_set("conversation_parts", {"type": "conversation_part.list", "conversation_parts": 5})),
        None,
        {},
        ["conversation {bad}: conversation_parts", "is not a list of parts"],
        True,
    ),
    "conversation-updated_at-null": (
        _retrieved(_set("updated_at", None)),
        None,
        {},
        ["conversation {bad}: updated_at is missing"],
        True,
    ),
    "conversation-is-another": (
        _retrieved(_set("id", "1")),
        None,
        {},
        ["conversation {bad}: Intercom answered with conversation 1 instead"],
        True,
    ),
    "conversation-not-an-object": (
        lambda route, payload, bad, sim: (
            ["not", "a", "conversation"] if route == "retrieve" and payload["id"] == bad else payload
        ),
        None,
        {},
        ["Intercom sent a conversation that is not an object"],
        True,
    ),
    "401-token-rejected": (
        None,
        None,
        {"access_token": "tok_rejected"},
        ["Intercom rejected the access token (401 on POST /conversations/search): check access_token"],
        False,
    ),
    "403-plan": (
        None,
        _error(403, "api_plan_restricted", "Active subscription needed."),
        {},
        [
            "Intercom refused POST /conversations/search (403 api_plan_restricted: Active subscription needed.)",
            "plan does not include API access",
        ],
        False,
    ),
    "403-scope-in-a-hydration-thread": (
        None,
        _error(403, "forbidden", "Forbidden", route="retrieve"),
        {},
        ["Intercom refused GET /conversations/{bad} (403 forbidden: Forbidden)", "not allowed to read conversations"],
        True,
    ),
    "400-version": (
        None,
        _error(400, "intercom_version_invalid", "Requested resource is not available in current API version."),
        {},
        ["Intercom refused api_version '2.16' on POST /conversations/search (400 intercom_version_invalid"],
        False,
    ),
    "400-parameter": (
        None,
        _error(400, "parameter_invalid", "per_page must be an integer between 1 and 150"),
        {},
        ["Intercom refused POST /conversations/search (400 parameter_invalid: per_page must be"],
        False,
    ),
}


def _payload_case(case, runner=None):
    rewrite, answer, settings, _, _ = PAYLOAD_CASES[case]
    simulator = IntercomSimulator(conversations=CONVERSATIONS, seed=5).start()
    bad = simulator.ids()[BAD_INDEX]
    if rewrite is not None:
        simulator.on_payload = lambda route, payload: rewrite(route, payload, bad, simulator)
    if answer is not None:
        simulator.on_request = lambda method, path, body: answer(method, path, body, bad)
    try:
        run = run_tap(tap_config(simulator, **settings), fast_retries=True, runner=runner)
        updated = {i: simulator.search_row(i)["updated_at"] for i in simulator.ids()}
    finally:
        simulator.stop()
    return run, bad, updated


@pytest.fixture(scope="module")
def payload_runs(runner):
    runs = run_all([lambda case=case: _payload_case(case, runner) for case in PAYLOAD_CASES], workers=6)
    return dict(zip(PAYLOAD_CASES, runs, strict=True))


@pytest.mark.parametrize("case", list(PAYLOAD_CASES))
def test_a_bad_answer_is_one_line_naming_it_and_never_a_wrong_row(case, payload_runs):
    run, bad, updated = payload_runs[case]
    fragments = [fragment.format(bad=bad) for fragment in PAYLOAD_CASES[case][3]]

    assert_fails_with_one_line(run, *fragments)
    emitted = [record["intercom_id"] for record in conversations(run)]
    assert bad not in emitted
    assert len(emitted) == len(set(emitted))
    if PAYLOAD_CASES[case][4]:  # hydration reads ahead, so not every record before the bad one is out
        assert emitted, "the records before the bad one should have gone out"
    assert_state_never_ahead(run, updated)


# ---- the same, through the installed console script -----------------------------------------------


def test_the_console_script_itself_reports_each_kind_of_mistake_in_one_line(quiet_sim):
    """A new interpreter per run, exactly as users run it: a setting, a state, an answer, a refusal."""
    setting, state, answer, refusal = run_all(
        [
            _config_case(quiet_sim, {"lookback_window_seconds": "x"}),
            _state_case(quiet_sim, STATE_CASES["bookmark-garbage"][0]),
            lambda: _payload_case("conversation-open-text"),
            lambda: _payload_case("403-scope-in-a-hydration-thread"),
        ]
    )

    assert_fails_with_one_line(setting, "configuration: lookback_window_seconds 'x' is not an integer")
    assert_fails_with_one_line(state, "state: the bookmark of", "'garbage' is not an ISO 8601 date-time")
    for (run, bad, updated), case in ((answer, "conversation-open-text"), (refusal, "403-scope-in-a-hydration-thread")):
        assert_fails_with_one_line(run, *(fragment.format(bad=bad) for fragment in PAYLOAD_CASES[case][3]))
        assert_state_never_ahead(run, updated)


def test_an_id_sent_as_a_number_is_the_one_documented_coercion(runner):
    """records.py: intercom_id is the id's digits as text; data keeps the number Intercom sent."""
    with IntercomSimulator(conversations=40, seed=6) as sim:
        sim.on_payload = lambda route, payload: (
            {**payload, "conversations": [{**row, "id": int(row["id"])} for row in payload["conversations"]]}
            if route == "search"
            else payload
        )
        run = run_tap(tap_config(sim, include_conversation_parts=False), runner=runner)

        assert run.returncode == 0, run.stderr[-2000:]
        records = conversations(run)
        assert sorted(r["intercom_id"] for r in records) == sorted(sim.ids())
        assert all(r["data"]["id"] == int(r["intercom_id"]) for r in records)
