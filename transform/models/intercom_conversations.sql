{#-
  One row per conversation, everything the other models need: computed again only for the
  conversations whose row or parts changed since the last build (macros/changed_since_last_build.sql);
  a conversation whose row the loader removed (deleted_conversations: remove) leaves this table too.
  Definitions and their reasons: docs/metrics.md.
-#}
{{ config(
    materialized='incremental',
    unique_key='conversation_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    indexes=[{'columns': ['conversation_id'], 'unique': True}],
    post_hook=["{{ remove_vanished_conversations() }}"],
) }}

with conversations as (
    select c.intercom_id as conversation_id, c.created_at, c.updated_at, c.state, c.title, c.data
    from {{ source('intercom', 'intercom_conversation_v1') }} as c
    {% if is_incremental() %}
    where c.intercom_id in ({{ changed_conversation_ids() }})
    {% endif %}
),

parts as (
    select
        p.conversation_intercom_id as conversation_id,
        p.intercom_id as part_id,
        p.part_type,
        p.author_type,
        p.author_id,
        p.assigned_to_type,
        p.assigned_to_id,
        p.created_at,
        -- conversation_part.state: the conversation's state when the part was created (Intercom 2.16)
        coalesce(
            p.data ->> 'state',
            case p.part_type when 'close' then 'closed' when 'snoozed' then 'snoozed'
                when 'open' then 'open' when 'unsnoozed' then 'open' when 'assign_and_reopen' then 'open' end
        ) as state,
        coalesce((p.data -> 'author' ->> 'from_ai_agent')::boolean, false) as from_ai_agent,
        row_number() over (
            partition by p.conversation_intercom_id order by p.created_at, length(p.intercom_id), p.intercom_id
        ) as seq
    from {{ source('intercom', 'intercom_conversation_part_v1') }} as p
    join conversations as c on c.conversation_id = p.conversation_intercom_id
),

-- The messages that make a conversation wait and the replies that end the wait: the opening message
-- (source) when a contact wrote it, contacts' comments, and admins' replies (docs/metrics.md).
messages as (
    select c.conversation_id, c.created_at as at, 0::bigint as seq, 'customer' as kind, null::text as admin_id
    from conversations as c
    where c.data -> 'source' -> 'author' ->> 'type' in ('user', 'lead', 'contact')
    union all
    select p.conversation_id, p.created_at, p.seq,
        case when p.author_type = 'admin' then 'admin' else 'customer' end,
        case when p.author_type = 'admin' then p.author_id end
    from parts as p
    where (p.part_type = 'comment' and p.author_type in ('user', 'lead', 'contact'))
       or (p.part_type in ('comment', 'quick_reply') and p.author_type = 'admin' and not p.from_ai_agent)
),

-- exchange: for a contact's message, the admin replies before it; for an admin reply, the replies before
-- it too, so a reply shares its exchange with the messages it answers (window functions, no self-join).
numbered as (
    select m.*,
        count(*) filter (where m.kind = 'admin') over (
            partition by m.conversation_id order by m.at, m.seq rows unbounded preceding
        ) - case when m.kind = 'admin' then 1 else 0 end as exchange
    from messages as m
),

-- An admin reply that ends a wait: seconds since the first contact message it answers.
waits as (
    select conversation_id, at, admin_id, exchange, waiting_since,
        extract(epoch from at - waiting_since) as wait_seconds
    from (
        select n.*, min(n.at) filter (where n.kind = 'customer') over (
            partition by n.conversation_id, n.exchange) as waiting_since
        from numbered as n
    ) as exchanges
    where kind = 'admin' and waiting_since is not null
),

wait_stats as (
    select conversation_id,
        (array_agg(at order by exchange))[1] as first_admin_response_at,
        (array_agg(admin_id order by exchange))[1] as first_response_admin_id,
        (array_agg(waiting_since order by exchange))[1] as first_contact_message_at,
        (array_agg(wait_seconds order by exchange))[1] as time_to_first_admin_response_seconds,
        percentile_cont(0.5) within group (order by wait_seconds) as median_reply_wait_seconds,
        count(*) as replies_to_waits
    from waits
    group by conversation_id
),

-- Closes and reopens are changes of state between consecutive parts that carry one (a conversation
-- starts open); a snooze keeps it open (Intercom: open is false only when the state is closed).
states as (
    select p.conversation_id, p.created_at, p.author_type, p.author_id, p.state,
        lag(p.state, 1, 'open') over (partition by p.conversation_id order by p.seq) as previous_state
    from parts as p
    where p.state is not null
),

transitions as (
    select conversation_id,
        array_agg(created_at order by created_at) filter (
            where state = 'closed' and previous_state <> 'closed') as close_times,
        array_agg(created_at order by created_at) filter (
            where state <> 'closed' and previous_state = 'closed') as reopen_times,
        array_agg(case when author_type = 'admin' then author_id end order by created_at) filter (
            where state = 'closed' and previous_state <> 'closed') as closers,
        count(*) filter (where state = 'snoozed' and previous_state <> 'snoozed') as snoozes
    from states
    group by conversation_id
),

part_stats as (
    select conversation_id,
        count(*) as parts_count,
        count(*) filter (where part_type in ('comment', 'quick_reply') and author_type = 'admin'
                          and not from_ai_agent) as admin_replies,
        count(*) filter (where part_type = 'comment' and author_type in ('user', 'lead', 'contact'))
            as contact_messages,
        count(*) filter (where part_type = 'note') as notes,
        count(*) filter (where author_type = 'bot') as bot_parts,
        array_agg(distinct author_id) filter (where author_type = 'admin') as participant_admin_ids,
        (array_agg(assigned_to_id order by seq) filter (
            where assigned_to_type = 'admin' and part_type like '%assign%'))[1] as first_assignee_id
    from parts
    group by conversation_id
),

part_type_counts as (
    select conversation_id, jsonb_object_agg(part_type, n order by part_type) as part_type_counts
    from (select conversation_id, coalesce(part_type, 'unknown') as part_type, count(*) as n
          from parts group by 1, 2) as counted
    group by conversation_id
),

author_type_counts as (
    select conversation_id, jsonb_object_agg(author_type, n order by author_type) as author_type_counts
    from (select conversation_id, coalesce(author_type, 'unknown') as author_type, count(*) as n
          from parts group by 1, 2) as counted
    group by conversation_id
)

select
    c.conversation_id,
    c.created_at,
    c.updated_at,
    c.title,
    c.state,
    c.state <> 'closed' as is_open,
    case
        when c.data -> 'source' -> 'author' ->> 'type' in ('user', 'lead', 'contact') then 'contact'
        when c.data -> 'source' -> 'author' ->> 'type' in ('admin', 'team') then 'admin'
        when c.data -> 'source' -> 'author' ->> 'type' = 'bot' then 'bot'
        else 'unknown'
    end as started_by,
    c.data -> 'source' -> 'author' ->> 'type' as source_author_type,
    c.data -> 'source' -> 'author' ->> 'id' as source_author_id,
    c.data -> 'source' ->> 'delivered_as' as delivered_as,
    coalesce(ps.first_assignee_id, nullif(nullif(c.data ->> 'admin_assignee_id', '0'), '')) as first_assignee_id,
    nullif(nullif(c.data ->> 'admin_assignee_id', '0'), '') as current_assignee_id,
    nullif(nullif(c.data ->> 'team_assignee_id', '0'), '') as current_team_assignee_id,
    coalesce(
        (select array_agg(tag ->> 'name' order by tag ->> 'name')
         from jsonb_array_elements(case jsonb_typeof(c.data -> 'tags' -> 'tags') when 'array'
                                   then c.data -> 'tags' -> 'tags' else '[]' end) as tag),
        '{}'
    ) as tags,
    (c.data -> 'conversation_rating' ->> 'rating')::int as rating,
    nullif(c.data -> 'conversation_rating' ->> 'remark', '') as rating_remark,
    c.data -> 'conversation_rating' -> 'teammate' ->> 'id' as rating_admin_id,
    to_timestamp((c.data -> 'conversation_rating' ->> 'created_at')::bigint) as rated_at,
    t.close_times[1] as first_close_at,
    t.close_times[cardinality(t.close_times)] as last_close_at,
    t.closers[cardinality(t.closers)] as last_closed_by_admin_id,
    coalesce(cardinality(t.close_times), 0) as closes,
    coalesce(cardinality(t.reopen_times), 0) as reopens,
    coalesce(t.snoozes, 0) as snoozes,
    coalesce(t.close_times, '{}') as close_times,
    coalesce(t.reopen_times, '{}') as reopen_times,
    coalesce(array_remove(t.closers, null), '{}') as closed_by_admin_ids,
    coalesce(ps.parts_count, 0) as parts_count,
    coalesce(ps.contact_messages, 0) as contact_messages,
    coalesce(ps.admin_replies, 0) as admin_replies,
    coalesce(ps.notes, 0) as notes,
    coalesce(ps.bot_parts, 0) as bot_parts,
    coalesce(ptc.part_type_counts, '{}') as part_type_counts,
    coalesce(atc.author_type_counts, '{}') as author_type_counts,
    coalesce(ps.participant_admin_ids, '{}') as participant_admin_ids,
    w.first_contact_message_at,
    w.first_admin_response_at,
    w.first_response_admin_id,
    w.time_to_first_admin_response_seconds,
    extract(epoch from t.close_times[1] - c.created_at) as time_to_first_close_seconds,
    extract(epoch from t.close_times[cardinality(t.close_times)] - c.created_at) as time_to_last_close_seconds,
    w.median_reply_wait_seconds,
    coalesce((c.data ->> 'deleted')::boolean, false) as is_deleted,
    to_timestamp((c.data ->> 'deleted_at')::bigint) as deleted_at,
    {{ snapshot_xmin() }} as _snapshot_xmin
from conversations as c
left join part_stats as ps on ps.conversation_id = c.conversation_id
left join part_type_counts as ptc on ptc.conversation_id = c.conversation_id
left join author_type_counts as atc on atc.conversation_id = c.conversation_id
left join transitions as t on t.conversation_id = c.conversation_id
left join wait_stats as w on w.conversation_id = c.conversation_id
