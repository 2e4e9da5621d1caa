-- Per conversation: response and close times, reopens, replies, the median reply wait (docs/metrics.md).
{{ config(materialized='view') }}

select
    conversation_id, created_at, state, is_deleted, first_contact_message_at, first_admin_response_at,
    first_response_admin_id, time_to_first_admin_response_seconds, first_close_at, time_to_first_close_seconds,
    last_close_at, time_to_last_close_seconds, closes, reopens, snoozes, admin_replies, contact_messages,
    median_reply_wait_seconds
from {{ ref('intercom_conversations') }}
