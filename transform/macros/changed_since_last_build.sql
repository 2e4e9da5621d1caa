{#
  Incremental builds: which conversations to compute again. A row of the loader's tables changed since
  the last build when PostgreSQL wrote it (xmin) after the oldest transaction still running when that
  build took its snapshot (stored in every row it wrote, _snapshot_xmin). Unlike updated_at, this also
  sees a conversation loaded late (the tap's lookback, verify --repair, a --full-refresh load), a part
  kept after Intercom stopped returning it, and a deletion marked by the loader's trigger.
  age(xmin) counts the transactions since a row was written (32 bits, wraparound-safe for the 2 billion
  transactions PostgreSQL allows between freezes); a row old enough to be frozen is only ever computed
  again, never missed.
#}
{% macro transactions_since_last_build() -%}
  (select pg_current_xact_id()::text::bigint - coalesce(max(_snapshot_xmin), 0) from {{ this }})
{%- endmacro %}

{% macro snapshot_xmin() -%}
  pg_snapshot_xmin(pg_current_snapshot())::text::bigint
{%- endmacro %}

{% macro changed_conversation_ids() -%}
  select c.intercom_id
  from {{ source('intercom', 'intercom_conversation_v1') }} as c
  where age(c.xmin) <= {{ transactions_since_last_build() }}
  union
  select p.conversation_intercom_id
  from {{ source('intercom', 'intercom_conversation_part_v1') }} as p
  where age(p.xmin) <= {{ transactions_since_last_build() }}
{%- endmacro %}

{# A conversation the loader removed (deleted_conversations: remove) leaves the model too. #}
{% macro remove_vanished_conversations() -%}
  delete from {{ this }} as built
  where not exists (select from {{ source('intercom', 'intercom_conversation_v1') }} as c
                    where c.intercom_id = built.conversation_id)
{%- endmacro %}
