-- One row per conversation: who started it, assignees, state, tags, rating, closes, parts (docs/metrics.md).
{{ config(materialized='view') }}

select
    conversation_id, created_at, updated_at, title, state, is_open, started_by, source_author_type,
    source_author_id, delivered_as, first_assignee_id, current_assignee_id, current_team_assignee_id, tags,
    rating, rating_remark, rating_admin_id, rated_at, first_close_at, last_close_at, last_closed_by_admin_id, closes,
    reopens, snoozes,
    parts_count, contact_messages, admin_replies, notes, bot_parts, part_type_counts, author_type_counts,
    is_deleted, deleted_at
from {{ ref('intercom_conversations') }}
