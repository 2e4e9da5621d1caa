"""intercom-conversation-verify: the check that the tables match Intercom."""
