-- Per admin (teammate): load, closes, response and close times, ratings; deleted conversations left out.
with live as (
    select conversation_id, participant_admin_ids, closed_by_admin_ids, first_response_admin_id,
        time_to_first_admin_response_seconds, last_closed_by_admin_id, time_to_last_close_seconds, rating,
        rating_admin_id
    from {{ ref('intercom_conversations') }}
    where not is_deleted
),

participated as (
    select admin_id, count(*) as conversations_participated  -- each admin once per conversation already
    from live cross join unnest(participant_admin_ids) as admin_id
    group by admin_id
),

closed as (
    select admin_id, count(*) as conversations_closed
    from live cross join lateral (select distinct unnest(live.closed_by_admin_ids)) as closers (admin_id)
    group by admin_id
),

responses as (
    select first_response_admin_id as admin_id, count(*) as first_responses,
        percentile_cont(0.5) within group (order by time_to_first_admin_response_seconds)
            as median_time_to_first_response_seconds
    from live where first_response_admin_id is not null
    group by first_response_admin_id
),

closes as (
    select last_closed_by_admin_id as admin_id,
        percentile_cont(0.5) within group (order by time_to_last_close_seconds) as median_time_to_close_seconds
    from live where last_closed_by_admin_id is not null
    group by last_closed_by_admin_id
),

ratings as (
    select rating_admin_id as admin_id, count(*) as ratings, avg(rating)::numeric(4, 2) as average_rating
    from live where rating is not null and rating_admin_id is not null
    group by rating_admin_id
),

admins as (
    select admin_id from participated union select admin_id from closed union select admin_id from responses
    union select admin_id from closes union select admin_id from ratings
)

select
    a.admin_id,
    coalesce(p.conversations_participated, 0) as conversations_participated,
    coalesce(c.conversations_closed, 0) as conversations_closed,
    coalesce(r.first_responses, 0) as first_responses,
    r.median_time_to_first_response_seconds,
    cl.median_time_to_close_seconds,
    coalesce(ra.ratings, 0) as ratings,
    ra.average_rating
from admins as a
left join participated as p on p.admin_id = a.admin_id
left join closed as c on c.admin_id = a.admin_id
left join responses as r on r.admin_id = a.admin_id
left join closes as cl on cl.admin_id = a.admin_id
left join ratings as ra on ra.admin_id = a.admin_id
