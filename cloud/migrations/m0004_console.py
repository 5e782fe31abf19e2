"""Console: the fleet's change order and mailed alerts.

- `car_sync.status_seq`: set from one fleet-wide counter whenever a car's kept state or presence
  report changes its row, so the console's live fleet page asks "what changed since N" in one
  indexed query instead of reading 10,000 rows (O-FLEET-1). Two writers on PostgreSQL may take
  the same number; the reader re-reads a margin behind what it has seen and compares.
- `alerts.mailed_at`: when the alert went out by mail to the operator (O-ALERT-1), so each goes
  once, from whichever cloud node gets there first.
"""

SQLITE = """
ALTER TABLE car_sync ADD COLUMN status_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX car_sync_status_seq ON car_sync (status_seq);
ALTER TABLE alerts ADD COLUMN mailed_at TEXT;
"""

POSTGRESQL = """
ALTER TABLE car_sync ADD COLUMN status_seq bigint NOT NULL DEFAULT 0;
CREATE INDEX car_sync_status_seq ON car_sync (status_seq);
ALTER TABLE alerts ADD COLUMN mailed_at timestamptz;
"""
