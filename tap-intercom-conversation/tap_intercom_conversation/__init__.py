"""Singer tap replicating Intercom conversations into the table intercom_conversation_v1."""
