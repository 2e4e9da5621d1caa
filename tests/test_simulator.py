"""The Intercom simulator against Intercom's OpenAPI 2.16 description, over real HTTP."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from tests.intercom_simulator import Faults, IntercomSimulator
from tests.intercom_simulator.spec import EXAMPLES_DIR, Spec

NOW = 1_750_000_000
TOKEN = "sim-token"
ALL = {"field": "updated_at", "operator": ">", "value": 0}
ASC = {"field": "updated_at", "order": "ascending"}
LONG_TITLE = "A very long conversation 📜"


@pytest.fixture(scope="session")
def spec() -> Spec:
    return Spec()  # the vendored description: missing is a failure, never a skip


@pytest.fixture(scope="module")
def sim() -> Iterator[IntercomSimulator]:
    """Shared and read-only: tests that change data make their own simulator."""
    with IntercomSimulator(conversations=1000, seed=7, now=NOW, long_conversation_parts=620) as s:
        yield s


@pytest.fixture
def small() -> Iterator[IntercomSimulator]:
    with IntercomSimulator(conversations=60, seed=3, now=NOW) as s:
        yield s


def http() -> requests.Session:
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {TOKEN}", "Intercom-Version": "2.16"})
    return session


def search(
    sim: IntercomSimulator,
    query: Any = ALL,
    per_page: int | None = 150,
    sort: Any = None,
    cursor: str | None = None,
    **kw: Any,
) -> requests.Response:
    body: dict[str, Any] = {"query": query, "pagination": {"per_page": per_page}}
    if cursor:
        body["pagination"]["starting_after"] = cursor
    if sort:
        body["sort"] = sort
    return http().post(f"{sim.url}/conversations/search", json=body, **kw)


def search_all(sim: IntercomSimulator, query: Any = ALL, sort: Any = ASC, per_page: int = 150) -> list[dict]:
    rows, cursor = [], None
    while True:
        page = search(sim, query, per_page, sort, cursor).json()
        rows += page["conversations"]
        if "next" not in page["pages"]:
            return rows
        cursor = page["pages"]["next"]["starting_after"]


def error_code(resp: requests.Response) -> str:
    return resp.json()["errors"][0]["code"]


# ---- conformance with the spec -----------------------------------------------------------
def test_validator_accepts_spec_examples_and_rejects_garbage(spec: Spec) -> None:
    for name, schema in [
        ("list_conversations.200.json", "conversation_list"),
        ("search_conversations.200.json", "conversation_list"),
        ("list_deleted_conversations.200.json", "deleted_conversation_list"),
    ]:
        spec.validate(json.loads((EXAMPLES_DIR / name).read_text()), schema, strict=False)
    for body in json.loads((EXAMPLES_DIR / "errors.json").read_text()).values():
        spec.validate(body, "error")
    row = json.loads((EXAMPLES_DIR / "search_conversations.200.json").read_text())["conversations"][0]
    with pytest.raises(jsonschema.ValidationError):
        spec.validate({**row, "state": "bogus"}, "conversation_list_item", strict=False)
    with pytest.raises(jsonschema.ValidationError):  # strict: undeclared fields are drift
        spec.validate({**row, "topics": {}}, "conversation_list_item")


def test_search_pages_match_spec(sim: IntercomSimulator, spec: Spec) -> None:
    cursor = None
    for _ in range(3):
        resp = search(sim, cursor=cursor)
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
        page = resp.json()
        spec.validate_response("/conversations/search", "post", 200, page)
        assert all("conversation_parts" not in row for row in page["conversations"])
        assert page["total_count"] == len(sim.ids()) and len(page["conversations"]) == 150
        cursor = page["pages"]["next"]["starting_after"]


def test_me_names_the_tokens_app_as_the_spec_does(sim: IntercomSimulator, spec: Spec) -> None:
    """GET /me (identifyAdmin): verify's report names the workspace from its app."""
    resp = http().get(f"{sim.url}/me")
    assert resp.status_code == 200
    spec.validate_response("/me", "get", 200, resp.json())
    assert resp.json()["app"]["id_code"] and resp.json()["app"]["name"]


def test_spec_request_example_is_answered(sim: IntercomSimulator, spec: Spec) -> None:
    body = json.loads((EXAMPLES_DIR / "search_conversations.request.json").read_text())
    spec.validate(body, "search_request", strict=False)
    page = http().post(f"{sim.url}/conversations/search", json=body).json()
    spec.validate_response("/conversations/search", "post", 200, page)
    assert page["pages"]["per_page"] == 5 and page["total_count"] == len(sim.ids())


def test_retrieve_matches_spec_and_python_api(sim: IntercomSimulator, spec: Spec) -> None:
    ids = sim.ids()
    (long_one,) = search_all(sim, {"field": "title", "operator": "=", "value": LONG_TITLE})
    sample = [*ids[:: len(ids) // 40], long_one["id"]]
    session = http()
    for cid in sample:
        resp = session.get(f"{sim.url}/conversations/{cid}")
        assert resp.status_code == 200
        payload = resp.json()
        spec.validate_response("/conversations/{conversation_id}", "get", 200, payload)
        assert payload == sim.conversation(cid)
        row = {k: v for k, v in payload.items() if k != "conversation_parts"}
        assert row == sim.search_row(cid)


def test_list_matches_spec_and_pages_everything_once(sim: IntercomSimulator, spec: Spec) -> None:
    session, seen, cursor = http(), [], None
    while True:
        params = {"per_page": 150, **({"starting_after": cursor} if cursor else {})}
        page = session.get(f"{sim.url}/conversations", params=params).json()
        spec.validate_response("/conversations", "get", 200, page)
        seen += [(r["updated_at"], int(r["id"])) for r in page["conversations"]]
        if "next" not in page["pages"]:
            break
        cursor = page["pages"]["next"]["starting_after"]
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == len(sim.ids())
    assert session.get(f"{sim.url}/conversations", params={"per_page": 151}).status_code == 400


def test_errors_match_spec(sim: IntercomSimulator, spec: Spec) -> None:
    cases = [
        (requests.get(f"{sim.url}/conversations/1"), 401, "unauthorized", "/conversations/{conversation_id}", "get"),
        (
            requests.get(f"{sim.url}/conversations", headers={"Authorization": "Bearer nope"}),
            401,
            "unauthorized",
            "/conversations",
            "get",
        ),
        (http().get(f"{sim.url}/conversations/123"), 404, "not_found", "/conversations/{conversation_id}", "get"),
        (http().get(f"{sim.url}/conversations/abc"), 404, "not_found", "/conversations/{conversation_id}", "get"),
        (search(sim, per_page=151), 400, "parameter_invalid", "/conversations/search", "post"),
        (
            http().get(f"{sim.url}/conversations/deleted", headers={"Intercom-Version": "2.15"}),
            400,
            "intercom_version_invalid",
            "/conversations/deleted",
            "get",
        ),
    ]
    for resp, status, code, path, method in cases:
        assert (resp.status_code, error_code(resp)) == (status, code), resp.text
        spec.validate_response(path, method, status, resp.json())
        assert ("X-RateLimit-Limit" in resp.headers) == (status != 401)  # not sent without valid credentials
    assert cases[0][0].json()["errors"][0]["message"] == "Access Token Invalid"


@pytest.mark.parametrize("version", ["1.0", "1.4", "2.0", "2.9", "2.16", "Unstable", None])
def test_accepted_versions(sim: IntercomSimulator, version: str | None) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", **({"Intercom-Version": version} if version else {})}
    assert requests.get(f"{sim.url}/conversations", headers=headers).status_code == 200


@pytest.mark.parametrize("version", ["3.0", "2.99", "latest", "2"])
def test_bad_version_is_400(sim: IntercomSimulator, version: str) -> None:
    resp = http().get(f"{sim.url}/conversations", headers={"Intercom-Version": version})
    assert resp.status_code == 400 and error_code(resp) == "intercom_version_invalid"
    assert "Intercom-Version" in resp.json()["errors"][0]["message"]


# ---- query grammar -------------------------------------------------------------------------
def test_and_or_nesting_matches_python_filter(sim: IntercomSimulator) -> None:
    query = {
        "operator": "AND",
        "value": [
            {
                "operator": "OR",
                "value": [
                    {"field": "state", "operator": "=", "value": "open"},
                    {"field": "state", "operator": "=", "value": "snoozed"},
                ],
            },
            {
                "operator": "OR",
                "value": [
                    {"field": "read", "operator": "=", "value": False},
                    {"field": "priority", "operator": "IN", "value": ["high", "urgent"]},
                ],
            },
            {"field": "source.author.email", "operator": "!~", "value": "zzz"},
        ],
    }
    rows = [sim.search_row(i) for i in sim.ids()]
    want = {
        r["id"]
        for r in rows
        if r["state"] in ("open", "snoozed") and (not r["read"] or r["priority"] in ("high", "urgent"))
    }
    got = [r["id"] for r in search_all(sim, query)]
    assert len(got) == len(set(got)) and set(got) == want and 0 < len(want) < len(rows)


def _group(n: int) -> dict:
    return {"operator": "OR", "value": [{"field": "id", "operator": "=", "value": str(i)} for i in range(n)]}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"query": _group(15)}, 200),
        ({"query": _group(16)}, 400),
        ({"query": {"operator": "AND", "value": [_group(2), _group(2)]}}, 200),
        ({"query": {"operator": "AND", "value": [{"operator": "OR", "value": [_group(2)]}]}}, 400),  # 3 levels
        ({"query": {"field": "updated_at", "operator": ">=", "value": 1}}, 400),  # contacts only
        ({"query": {"field": "updated_at", "operator": "LIKE", "value": 1}}, 400),
        ({"query": {"field": "state", "operator": ">", "value": "open"}}, 400),  # > is for integers/dates
        ({"query": {"field": "created_at", "operator": ">", "value": "foobar"}}, 400),
        ({"query": {"field": "state", "operator": "IN", "value": "open"}}, 400),
        ({"query": {"field": "nonsense", "operator": "=", "value": 1}}, 400),
        ({"query": {"operator": "XOR", "value": []}}, 400),
        ({"pagination": {"per_page": 5}}, 400),  # query is required
        ({"query": ALL, "pagination": {"per_page": 150}}, 200),
        ({"query": ALL, "pagination": {"per_page": 151}}, 400),
        ({"query": ALL, "pagination": {"per_page": 0}}, 400),
        ({"query": ALL, "pagination": {"starting_after": "not-a-cursor"}}, 400),
        ({"query": ALL, "sort": {"field": "updated_at", "order": "desc"}}, 400),
    ],
)
def test_query_validation(sim: IntercomSimulator, spec: Spec, body: dict, status: int) -> None:
    resp = http().post(f"{sim.url}/conversations/search", json=body)
    assert resp.status_code == status, resp.text
    spec.validate_response("/conversations/search", "post", status, resp.json())
    if body.get("sort"):
        assert error_code(resp) == "invalid_sort_order"


def test_strict_and_inclusive_date_comparison(sim: IntercomSimulator) -> None:
    counts = Counter(sim.search_row(i)["updated_at"] for i in sim.ids())
    second, size = counts.most_common(1)[0]
    assert size >= 160  # one updated_at second holds more than a page of 150
    after, before = sum(n for t, n in counts.items() if t > second), sum(n for t, n in counts.items() if t < second)
    with IntercomSimulator(
        conversations=1000, seed=7, now=NOW, long_conversation_parts=620, date_comparison="inclusive"
    ) as incl:
        for target, extra in ((sim, 0), (incl, size)):
            for force_scan in (False, True):  # the indexed range path and the full predicate path

                def total(op: str, target: IntercomSimulator = target, force_scan: bool = force_scan) -> int:
                    f: dict = {"field": "updated_at", "operator": op, "value": second}
                    q = {"operator": "AND", "value": [f, {"field": "open", "operator": "IN", "value": [True, False]}]}
                    return search(target, q if force_scan else f, per_page=1).json()["total_count"]

                assert total(">") == after + extra and total("<") == before + extra
                assert total("=") == size


def test_sort_ascending_by_updated_at_then_id_pages_each_id_once(sim: IntercomSimulator) -> None:
    keys = [(r["updated_at"], int(r["id"])) for r in search_all(sim)]
    assert keys == sorted(set(keys)) and len(keys) == len(sim.ids())
    first = search(sim, per_page=20).json()  # Intercom's default order is updated_at descending
    assert [(r["updated_at"], int(r["id"])) for r in first["conversations"]] == sorted(keys, reverse=True)[:20]
    created = [
        (r["created_at"], int(r["id"])) for r in search_all(sim, sort={"field": "created_at", "order": "ascending"})
    ]
    assert created == sorted(created)


def test_cursor_is_an_offset_so_changes_between_pages_skip_and_duplicate(small: IntercomSimulator) -> None:
    """Documents Intercom's caveat: the cursor is a position in the *current* result list.

    Touching a conversation already returned moves it to the end (ascending updated_at); every
    later row shifts one place left, so the row at the page boundary is skipped and the touched
    one comes back a second time.
    """
    before = [r["id"] for r in search_all(small)]
    pages: list[int] = []

    def hook(page_index: int) -> None:
        pages.append(page_index)
        if page_index == 1:
            small.touch(before[3], at=NOW + 1000)

    small.on_search_page = hook
    got = [r["id"] for r in search_all(small, per_page=10)]
    assert pages == [0, 1, 2, 3, 4, 5]
    assert before[10] not in got  # skipped
    assert Counter(got)[before[3]] == 2 and got[-1] == before[3]  # duplicated
    assert set(got) == set(before) - {before[10]}


# ---- retrieve, mutations, deleted ----------------------------------------------------------
def test_part_cap_keeps_500_most_recent_with_real_total() -> None:
    with IntercomSimulator(conversations=5, seed=1, now=NOW, long_conversation_parts=620) as s:
        (cid,) = [r["id"] for r in search_all(s, {"field": "title", "operator": "=", "value": LONG_TITLE})]
        conv = http().get(f"{s.url}/conversations/{cid}").json()
        parts = conv["conversation_parts"]
        assert (len(parts["conversation_parts"]), parts["total_count"]) == (500, 620)
        assert conv["statistics"]["count_conversation_parts"] == 620
        times = [p["created_at"] for p in parts["conversation_parts"]]
        assert times == sorted(times) and times[-1] == conv["updated_at"]
        at = s.touch(cid, at=NOW + 50)
        conv = http().get(f"{s.url}/conversations/{cid}").json()
        assert conv["conversation_parts"]["total_count"] == 621 == conv["statistics"]["count_conversation_parts"]
        parts = conv["conversation_parts"]["conversation_parts"]
        assert len(parts) == 500 and parts[-1]["created_at"] == at == conv["updated_at"] == NOW + 50


def test_touch_create_and_delete(small: IntercomSimulator, spec: Spec) -> None:
    cid = small.ids()[0]
    parts = small.conversation(cid)["conversation_parts"]["total_count"]
    assert small.touch(cid, at=NOW + 10) == NOW + 10
    assert small.conversation(cid)["conversation_parts"]["total_count"] == parts + 1
    assert search_all(small)[-1] == small.search_row(cid)
    new = small.create(at=NOW + 20)
    assert new.isdigit() and search_all(small)[-1]["id"] == new and new in small.ids()
    session = http()
    for i, victim in enumerate(small.ids()[:3]):
        small.delete(victim, at=NOW + 100 + i)
        assert session.get(f"{small.url}/conversations/{victim}").status_code == 404
        assert victim not in {r["id"] for r in search_all(small)}
    page = session.get(f"{small.url}/conversations/deleted", params={"per_page": 2}).json()
    spec.validate_response("/conversations/deleted", "get", 200, page)
    assert page["type"] == "conversations.list" and page["total_count"] == 3
    assert [c["deleted_at"] for c in page["conversations"]] == [NOW + 102, NOW + 101]
    last = session.get(page["pages"]["next"]).json()
    assert [c["deleted_at"] for c in last["conversations"]] == [NOW + 100] and "next" not in last["pages"]
    asc = session.get(f"{small.url}/conversations/deleted", params={"order": "asc"}).json()
    assert [c["deleted_at"] for c in asc["conversations"]] == [NOW + 100, NOW + 101, NOW + 102]
    assert session.get(f"{small.url}/conversations/deleted", params={"per_page": 61}).status_code == 400
    assert session.get(f"{small.url}/conversations/deleted", headers={"Intercom-Version": "Unstable"}).ok


# ---- rate limits, faults, latency ----------------------------------------------------------
def test_rate_limit_headers(sim: IntercomSimulator) -> None:
    a, b = http().get(f"{sim.url}/conversations"), http().get(f"{sim.url}/conversations")
    for r in (a, b):
        reset = int(r.headers["X-RateLimit-Reset"])
        assert r.headers["X-RateLimit-Limit"] == "1667" and reset % 10 == 0
        assert time.time() - 1 <= reset <= time.time() + 11
    ra, rb = int(a.headers["X-RateLimit-Remaining"]), int(b.headers["X-RateLimit-Remaining"])
    assert rb == ra - 1 or b.headers["X-RateLimit-Reset"] != a.headers["X-RateLimit-Reset"]


def test_rate_limit_enforced() -> None:
    with IntercomSimulator(conversations=5, now=NOW, rate_limit=3) as s:
        resps = [http().get(f"{s.url}/conversations") for _ in range(10)]  # at most 2 windows: <= 6 allowed
        limited = [r for r in resps if r.status_code == 429]
        assert limited and error_code(limited[0]) == "rate_limit_exceeded"
        assert limited[0].json()["errors"][0]["message"] == "Exceeded rate limit of 3 in 10_seconds"
        assert limited[0].headers["X-RateLimit-Remaining"] == "0" and s.stats["rate_limited"] == len(limited)


def test_each_fault_kind_is_observable(spec: Spec) -> None:
    def sim_with(**kw: Any) -> IntercomSimulator:
        return IntercomSimulator(conversations=10, now=NOW, faults=Faults(**kw)).start()

    s = sim_with(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        http().get(f"{s.url}/conversations")
    assert s.stats["faults"]["drop"] == 1 and requests.get(f"{s.url}/conversations").status_code == 401
    s.stop()
    s = sim_with(slow_rate=1.0, slow_seconds=1.5)
    with pytest.raises(requests.Timeout):
        http().get(f"{s.url}/conversations", timeout=0.3)
    s.stop()
    s = sim_with(error_rate=1.0, html_fraction=1.0)
    r = http().get(f"{s.url}/conversations")
    assert r.status_code in (500, 502, 503) and r.headers["Content-Type"] == "text/html" and "<html>" in r.text
    s.stop()
    s = sim_with(error_rate=1.0, html_fraction=0.0)
    r = search(s)
    assert r.status_code in (500, 502, 503)
    spec.validate(r.json(), "error")
    s.stop()
    s = sim_with(bad_json_rate=1.0)
    r = search(s)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    s.stop()
    s = sim_with(change_rate=1.0, changes_per_event=2)
    before = {i: s.search_row(i)["updated_at"] for i in s.ids()}
    search(s), search(s), http().get(f"{s.url}/conversations")
    assert s.stats["changes"] == 4 and 1 <= sum(s.search_row(i)["updated_at"] != t for i, t in before.items()) <= 4
    s.stop()


def test_faults_are_deterministic_per_seed() -> None:
    def statuses(seed: int) -> list[int]:
        with IntercomSimulator(conversations=5, now=NOW, faults=Faults(seed=seed, error_rate=0.5)) as s:
            return [http().get(f"{s.url}/conversations").status_code for _ in range(30)]

    assert statuses(1) == statuses(1) != statuses(2)


def test_latency_is_slept_concurrently() -> None:
    with IntercomSimulator(conversations=5, now=NOW, latency_ms=1000) as s:
        start = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: http().get(f"{s.url}/conversations").status_code, range(6)))
        # slept (>= 1 s) and concurrently (one after another would take 6 s)
        assert codes == [200] * 6 and 1.0 <= time.monotonic() - start < 4.0


# ---- data ---------------------------------------------------------------------------------
def test_same_seed_same_data() -> None:
    def run(seed: int) -> tuple[dict, dict]:
        with IntercomSimulator(conversations=200, seed=seed, now=NOW) as s:
            return s.truth(), search(s, per_page=50).json()

    assert run(5) == run(5)
    assert run(5)[0] != run(6)[0]


def test_data_is_realistic(sim: IntercomSimulator) -> None:
    rows = [sim.search_row(i) for i in sim.ids()]
    assert {r["state"] for r in rows} == {"open", "closed", "snoozed"}
    for r in rows:
        assert r["id"].isdigit() and r["open"] == (r["state"] != "closed")
        assert NOW - 731 * 86400 <= r["created_at"] <= r["updated_at"] <= NOW
        assert (r["snoozed_until"] is not None) == (r["state"] == "snoozed")
        assert all(type(r[k]) is int for k in ("created_at", "updated_at"))
    titles = [r["title"] for r in rows]
    assert None in titles and any(t and "\n" in t for t in titles)
    assert any(t and re.search(r"[\u0590-\u06ff]", t) for t in titles) and any(t and "😀" in t for t in titles)
    n_parts = [r["statistics"]["count_conversation_parts"] for r in rows]
    assert 0 in n_parts and sum(n >= 50 for n in n_parts) >= 5 and 620 in n_parts
    shared_seconds = [n for n in Counter(r["updated_at"] for r in rows).values() if n >= 2]
    assert len(shared_seconds) >= 3 and max(shared_seconds) >= 160


@pytest.mark.slow
def test_100k_conversations_are_served_in_updated_at_order() -> None:
    """The benchmark's workspace size works; how fast is benchmarks/bench.py's business, not a unit test's."""
    with IntercomSimulator(conversations=100_000, seed=2) as big:
        page = search(big, per_page=150, sort=ASC, cursor=None).json()
    assert page["total_count"] == 100_000
    positions = [(row["updated_at"], int(row["id"])) for row in page["conversations"]]
    assert len(positions) == 150 and positions == sorted(positions)


def test_cli_prints_url_serves_and_exits_cleanly_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.intercom_simulator", "--conversations", "20", "--port", "0"],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.fullmatch(r"intercom simulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        assert http().get(f"{match.group(1)}/conversations").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        proc.kill()


def test_an_edited_part_and_added_parts_stay_as_documented(spec: Spec) -> None:
    with IntercomSimulator(conversations=20, seed=8, now=NOW) as edited:
        cid = next(c for c in edited.ids() if edited.conversation(c)["conversation_parts"]["total_count"])
        part_id = edited.conversation(cid)["conversation_parts"]["conversation_parts"][0]["id"]
        edited.touch(cid, at=NOW + 10)
        assert edited.edit_part(cid, part_id, at=NOW + 20) == NOW + 20
        payload = edited.conversation(cid)
    spec.validate_response("/conversations/{conversation_id}", "get", 200, payload)
    [part] = [p for p in payload["conversation_parts"]["conversation_parts"] if p["id"] == part_id]
    assert (part["redacted"], part["body"], part["updated_at"]) == (True, None, NOW + 20)
    assert payload["updated_at"] == NOW + 20
