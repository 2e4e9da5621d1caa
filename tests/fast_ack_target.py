"""The project's loader (target-intercom-postgres), committing and so acknowledging STATE every 3 s.

The loader commits every sink at least every 25 s and after each full batch, and acknowledges each STATE
once a commit covers it (target.py, acknowledge.py). singer-sdk also drains every sink once its oldest
record is `_MAX_RECORD_AGE_IN_MINUTES` old (5 minutes); this wrapper sets that to 0.05 (FAST_ACK_MINUTES),
so that commits, and the bookmarks Meltano stores, come every few seconds. tests/test_meltano.py's
`fast_ack_project` installs it as the loader, so that its kill test finds a stored bookmark early in a run
of 3,000 conversations on any machine and kills the job before the run ends (test_acknowledge.py kills the
loader as it is, 75 s into a rate-limited run).
"""

import os

from target_intercom_postgres import target as loader

loader.TargetIntercomPostgres._MAX_RECORD_AGE_IN_MINUTES = float(os.environ.get("FAST_ACK_MINUTES", "0.05"))

if __name__ == "__main__":
    loader.main()
