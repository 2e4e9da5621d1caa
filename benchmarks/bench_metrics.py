#!/usr/bin/env python3
"""Benchmark of the metrics models (transform/, issue 26): full and incremental `dbt build` times.

    .venvs/dev/bin/python benchmarks/bench_metrics.py [--conversations 100000] [--parts-per-conversation 10]

The rows are generated straight into the loader's tables with SQL (loading 100,000 hydrated
conversations through the tap takes about half an hour here): each conversation as the loader leaves
it (a contact's opening message, tags, a rating on one in four, ~3 KB of data), with ten parts (a bot
comment, an assignment, a note, admin replies, contact messages, a close, a reopen, a close or a
snooze), written with the loader's triggers off (session_replication_role = replica) as they would
stand after its loads. Then, as the job runs it (`dbt build`: the models and their tests):
  1. a full build (`--full-refresh`);
  2. an incremental build when nothing changed;
  3. an incremental build after 1 % of the conversations changed (a new part and a new updated_at,
     written with the triggers on, as the loader writes them) and 0.1 % were deleted (marked);
each timed from dbt's start to its exit, with the load average. Step 3 is run --repeat times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from bench import DATABASE_URL, machine, scratch_schema, sqlalchemy_url
from bench import load as load_average

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.helpers import tool  # noqa: E402

DBT = tool("dbt", "dbt")
TRANSFORM = REPO / "transform"

CONVERSATIONS = """
INSERT INTO intercom_conversation_v1 (intercom_id, title, state, open, read, created_at, updated_at, data)
SELECT i::text, NULL, state, state <> 'closed', true, c0, c0 + interval '3 hours',
  jsonb_build_object(
    'type', 'conversation', 'id', i::text, 'state', state, 'open', state <> 'closed',
    'created_at', extract(epoch FROM c0)::bigint, 'updated_at', extract(epoch FROM c0)::bigint + 10800,
    'admin_assignee_id', admin, 'team_assignee_id', 0,
    'source', jsonb_build_object('type', 'conversation', 'delivered_as', 'customer_initiated', 'body', '<p>Help</p>',
                                 'author', jsonb_build_object('type', 'user', 'id', 'u' || i)),
    'tags', jsonb_build_object('type', 'tag.list', 'tags', CASE WHEN i %% 5 = 0
      THEN '[{"type": "tag", "id": "123456", "name": "VIP"}]'::jsonb ELSE '[]'::jsonb END),
    'conversation_rating', CASE WHEN i %% 4 = 0 THEN jsonb_build_object('rating', 1 + i %% 5, 'remark', 'ok',
      'teammate', jsonb_build_object('type', 'admin', 'id', admin::text)) END,
    'custom_attributes', jsonb_build_object('notes', (SELECT string_agg(md5((i * 100 + n)::text), '')
                                                      FROM generate_series(1, 90) AS n)))
FROM (SELECT i, timestamptz '2024-01-01 00:00+00' + i * interval '7 minutes' AS c0, 991267601 + i %% 10 AS admin,
             CASE WHEN i %% 10 < 7 THEN 'closed' WHEN i %% 10 < 9 THEN 'open' ELSE 'snoozed' END AS state
      FROM generate_series(1, %(conversations)s) AS i) AS s
"""

PARTS = """
INSERT INTO intercom_conversation_part_v1 (intercom_id, conversation_intercom_id, part_type, author_type, author_id,
                                           assigned_to_type, assigned_to_id, body, redacted, created_at, updated_at,
                                           data)
SELECT (i * 1000 + k)::text, i::text, kind, who, who_id, CASE WHEN kind = 'assignment' THEN 'admin' END,
       CASE WHEN kind = 'assignment' THEN who_id END, '<p>part</p>', false, at, at,
       jsonb_build_object('type', 'conversation_part', 'id', (i * 1000 + k)::text, 'part_type', kind, 'state', state,
                          'body', '<p>part</p>', 'created_at', extract(epoch FROM at)::bigint,
                          'author', jsonb_build_object('type', who, 'id', who_id))
FROM (
  SELECT i, k, c0 + (k * 1000 + (i * (k + 1) * 37) %% 900) * interval '1 second' AS at,
    (ARRAY['comment', 'assignment', 'note', 'comment', 'comment', 'comment', 'close', 'comment', 'comment',
           CASE c_state WHEN 'closed' THEN 'close' WHEN 'snoozed' THEN 'snoozed' ELSE 'comment' END])[k %% 10 + 1]
      AS kind,
    (ARRAY['bot', 'admin', 'admin', 'admin', 'user', 'admin', 'admin', 'user', 'admin',
           CASE c_state WHEN 'open' THEN 'user' ELSE 'admin' END])[k %% 10 + 1] AS who,
    CASE WHEN (ARRAY[0, 1, 1, 1, 2, 1, 1, 2, 1, 1])[k %% 10 + 1] = 1 THEN (991267601 + (i + k) %% 10)::text
         WHEN k %% 10 = 0 THEN '991267654' ELSE 'u' || i END AS who_id,
    CASE WHEN k %% 10 = 6 THEN 'closed' WHEN k %% 10 = 9 THEN c_state ELSE 'open' END AS state
  FROM (SELECT i, timestamptz '2024-01-01 00:00+00' + i * interval '7 minutes' AS c0,
               CASE WHEN i %% 10 < 7 THEN 'closed' WHEN i %% 10 < 9 THEN 'open' ELSE 'snoozed' END AS c_state
        FROM generate_series(1, %(conversations)s) AS i) AS c
  CROSS JOIN generate_series(0, %(per)s - 1) AS k
) AS p
"""

# 1 % of the conversations get a part and a newer updated_at; 0.1 % are deleted (the loader marks them).
CHANGES = """
UPDATE intercom_conversation_v1 SET updated_at = updated_at + interval '1 day',
  data = data || jsonb_build_object('updated_at', extract(epoch FROM updated_at + interval '1 day')::bigint)
WHERE intercom_id::bigint %% 100 = %(round)s;
INSERT INTO intercom_conversation_part_v1 (intercom_id, conversation_intercom_id, part_type, author_type, author_id,
                                           created_at, updated_at, data)
SELECT intercom_id || '-r' || %(round)s, intercom_id, 'comment', 'user', 'u' || intercom_id, updated_at, updated_at,
       jsonb_build_object('type', 'conversation_part', 'part_type', 'comment', 'state', 'open',
                          'author', jsonb_build_object('type', 'user', 'id', 'u' || intercom_id))
FROM intercom_conversation_v1 WHERE intercom_id::bigint %% 100 = %(round)s;
INSERT INTO intercom_conversation_v1_deletion (intercom_id, deleted_at, metrics_retained, remove_row)
SELECT intercom_id, now(), false, false FROM intercom_conversation_v1
WHERE intercom_id::bigint %% 1000 = %(round)s + 500
ON CONFLICT DO NOTHING;
"""


def dbt_build(schema: str, work: Path, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARGET_POSTGRES", "DBT_"))}
    env.update(
        TARGET_POSTGRES_SQLALCHEMY_URL=sqlalchemy_url(),
        TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=schema,
        DBT_PROFILES_DIR=str(TRANSFORM),
        DBT_TARGET_PATH=str(work / "target"),
        DBT_LOG_PATH=str(work / "logs"),
    )
    started = time.monotonic()
    done = subprocess.run([DBT, "build", *args], cwd=TRANSFORM, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"dbt build failed:\n{done.stdout[-4000:]}")
    return elapsed


def model_seconds(work: Path) -> str:
    results = json.loads((work / "target" / "run_results.json").read_text())["results"]
    models = [r for r in results if r["unique_id"].startswith("model.")]
    tests = sum(r["execution_time"] for r in results if r["unique_id"].startswith("test."))
    shown = ", ".join(f"{r['unique_id'].rsplit('.', 1)[1]} {r['execution_time']:.1f}" for r in models)
    return f"{shown}; tests {tests:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--parts-per-conversation", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    options = parser.parse_args()
    print(machine())
    with scratch_schema() as schema, tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        work = Path(tmp)
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            started = time.monotonic()
            conn.execute("SET session_replication_role = replica")
            sizes = {"conversations": options.conversations, "per": options.parts_per_conversation}
            conn.execute(CONVERSATIONS, sizes)
            conn.execute(PARTS, sizes)
            conn.execute("RESET session_replication_role")
            conn.execute("VACUUM ANALYZE intercom_conversation_v1, intercom_conversation_part_v1")
            parts = conn.execute("SELECT count(*) FROM intercom_conversation_part_v1").fetchone()[0]
            print(
                f"generated {options.conversations:,} conversations and {parts:,} parts in "
                f"{time.monotonic() - started:.0f} s"
            )
            full = dbt_build(schema, work, "--full-refresh")
            print(f"1. full build: {full:.1f} s (load average {load_average()}) [{model_seconds(work)}]")
            unchanged = dbt_build(schema, work)
            print(
                f"2. incremental, nothing changed: {unchanged:.1f} s (load average {load_average()}) "
                f"[{model_seconds(work)}]"
            )
            for round_ in range(options.repeat):
                with conn.transaction():
                    for statement in CHANGES.split(";")[:-1]:
                        conn.execute(statement, {"round": round_ + 1})
                incremental = dbt_build(schema, work)
                print(
                    f"3. incremental, 1 % changed and 0.1 % deleted: {incremental:.1f} s, {incremental / full:.2f} "
                    f"of the full build (load average {load_average()}) [{model_seconds(work)}]"
                )


if __name__ == "__main__":
    main()
