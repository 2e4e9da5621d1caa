-- Per calendar day (var metrics_timezone, UTC by default): conversations opened, closed, and the backlog
-- (conversations not closed) at the end of the day; deleted conversations left out.
{% set tz = "'" ~ var('metrics_timezone') ~ "'" %}

with live as (
    select conversation_id, created_at, close_times, reopen_times
    from {{ ref('intercom_conversations') }}
    where not is_deleted
),

events as (
    select (created_at at time zone {{ tz }})::date as day, conversation_id, 'opened' as kind from live
    union all
    select (at at time zone {{ tz }})::date, conversation_id, 'closed' from live cross join unnest(close_times) as at
    union all
    select (at at time zone {{ tz }})::date, conversation_id, 'reopened' from live cross join unnest(reopen_times) as at
),

per_day as (
    select day,
        count(*) filter (where kind = 'opened') as opened,
        count(distinct conversation_id) filter (where kind = 'closed') as closed,
        count(*) filter (where kind = 'closed') as closes,
        count(*) filter (where kind = 'reopened') as reopens
    from events
    group by day
),

days as (
    select generate_series(min(day), greatest(max(day), (now() at time zone {{ tz }})::date), interval '1 day')::date
        as day
    from per_day
)

select
    d.day,
    coalesce(p.opened, 0) as opened,
    coalesce(p.closed, 0) as closed,
    coalesce(p.closes, 0) as closes,
    coalesce(p.reopens, 0) as reopens,
    sum(coalesce(p.opened, 0) - coalesce(p.closes, 0) + coalesce(p.reopens, 0)) over (order by d.day)
        as open_backlog
from days as d
left join per_day as p on p.day = d.day
