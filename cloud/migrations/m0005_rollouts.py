"""Rollouts: a published release offered to cars in stages (SPEC O-OTA-1).

- `rollouts`: one per release sent out: its `version`, its `status` (running, paused, stopped
  by a failing canary, aborted by the operator, done) and its `stage` (the canary cars first,
  then the rest), why it stopped (`reason`), who started it and when.
- `rollout_cars`: each car of a rollout, whether it is a canary, and the last step it reported
  of the update (`step`: pending until offered; then what the car said: offered, downloading,
  downloaded, waiting, installed, healthy, rolled back, refused, failed) with its reason, when
  the cloud last offered it, and when the car last said something.
"""

_STATUS = "('running', 'paused', 'stopped', 'aborted', 'done')"
_STAGE = "('canary', 'rest')"
_STEP = (
    "('pending', 'offered', 'downloading', 'downloaded', 'waiting', 'installed', 'healthy', "
    "'rolled_back', 'refused', 'failed')"
)

SQLITE = f"""
CREATE TABLE rollouts (
    rollout_id INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN {_STATUS}),
    stage TEXT NOT NULL CHECK (stage IN {_STAGE}),
    reason TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE TABLE rollout_cars (
    rollout_id INTEGER NOT NULL REFERENCES rollouts (rollout_id),
    car_id TEXT NOT NULL REFERENCES cars (car_id),
    canary INTEGER NOT NULL CHECK (canary IN (0, 1)),
    step TEXT NOT NULL DEFAULT 'pending' CHECK (step IN {_STEP}),
    reason TEXT NOT NULL DEFAULT '',
    offered_at TEXT,
    step_at TEXT,
    PRIMARY KEY (rollout_id, car_id)
) STRICT;
CREATE INDEX rollout_cars_car ON rollout_cars (car_id);
"""

POSTGRESQL = f"""
CREATE TABLE rollouts (
    rollout_id bigserial PRIMARY KEY,
    version text NOT NULL,
    status text NOT NULL CHECK (status IN {_STATUS}),
    stage text NOT NULL CHECK (stage IN {_STAGE}),
    reason text NOT NULL DEFAULT '',
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE rollout_cars (
    rollout_id bigint NOT NULL REFERENCES rollouts (rollout_id),
    car_id text NOT NULL REFERENCES cars (car_id),
    canary boolean NOT NULL,
    step text NOT NULL DEFAULT 'pending' CHECK (step IN {_STEP}),
    reason text NOT NULL DEFAULT '',
    offered_at timestamptz,
    step_at timestamptz,
    PRIMARY KEY (rollout_id, car_id)
);
CREATE INDEX rollout_cars_car ON rollout_cars (car_id);
"""
