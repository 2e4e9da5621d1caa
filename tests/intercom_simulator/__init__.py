"""A loopback simulator of Intercom's REST API 2.16 (conversations) for testing the tap.

    from tests.intercom_simulator import IntercomSimulator, Faults

    with IntercomSimulator(conversations=1000, seed=0) as sim:
        requests.post(f"{sim.url}/conversations/search", ...)

Endpoints: POST /conversations/search, GET /conversations, GET /conversations/{id},
GET /conversations/deleted (2.16+). Behaviour follows the OpenAPI description in
tests/intercom_openapi/ (vendored, MIT; validated by tests/test_simulator.py via spec.py):

- search rows and list rows are ``conversation_list_item`` (no conversation_parts);
  GET returns the 500 most recent parts with the real ``total_count``.
- search default order: updated_at descending; ties broken by numeric id. Sort fields:
  updated_at, created_at, id; a bad ``order`` is 400 ``invalid_sort_order``.
- cursors (``pages.next.starting_after``) are base64 JSON offsets into the current
  result list: changes between pages skip or duplicate rows, as Intercom warns.
- errors are ``error.list``: 401 unauthorized, 404 not_found, 400 parameter_invalid /
  parameter_not_found / bad_request / intercom_version_invalid, 429 rate_limit_exceeded.
- X-RateLimit-* headers on every authenticated response (none on 401).

Modules: simulator (facade), app (request handling), server (HTTP), store (records,
index, mutations), query (search grammar), data/static/render (deterministic data),
faults (fault injection, rate limiter), spec (schema validation), __main__ (CLI).
"""

from .faults import Faults
from .simulator import IntercomSimulator

__all__ = ["Faults", "IntercomSimulator"]
