"""The project's loader (target-postgres that applies the tables), acknowledging STATE every few seconds.

target-postgres acknowledges (emits) STATE only when it drains all its sinks: at the end of its input,
on SIGTERM, or once its oldest record is 5 minutes old. A test of "a killed run resumes from the last
acknowledged state" cannot wait 5 minutes, so this wrapper shortens only that period.
"""

import os

from target_intercom_postgres import target as loader

loader.TargetIntercomPostgres._MAX_RECORD_AGE_IN_MINUTES = float(os.environ.get("FAST_ACK_MINUTES", "0.05"))

if __name__ == "__main__":
    loader.main()
