"""Sync with the cars and notifications: per-car sync state, car events, commands, mail outbox.

`car_sync` holds one row per car: `change_seq`, bumped by triggers in the same transaction as any
write that concerns the car's snapshot (a reservation written, a card registered or revoked for a
driver with a live reservation on it, a licence changed), and `published_change`, the change the
last published snapshot covers; the car's snapshot version; the last applied event sequence
number; its last `state` and `online` reports. The triggers see every writer — the API, the CLI
in another process, another cloud worker — so no change can miss its car (SPEC S-SYNC-1).

`car_events` keeps every event a car sent, by its unique id (SPEC S-SYNC-2: applied once);
`car_commands` every remote operation and its one result (S-SYNC-3); `notifications` is the mail
outbox (N-MAIL-1), filled by triggers in the same transaction as the reservation change, the
trip's end or the card registration it tells of, so a mail and its cause never disagree.
"""

_LIVE = "('reserved', 'in_use')"
_KINDS = (
    "('reservation_created', 'reservation_changed', 'reservation_cancelled', "
    "'reservation_extended', 'trip_ended', 'card_registered')"
)
_NOTIFY_CHANGES = "('created', 'changed', 'cancelled', 'extended', 'returned')"
_KIND_OF_CHANGE = "CASE {k} WHEN 'returned' THEN 'trip_ended' ELSE 'reservation_' || {k} END"

SQLITE = f"""
CREATE TABLE car_sync (
    car_id TEXT PRIMARY KEY REFERENCES cars (car_id),
    change_seq INTEGER NOT NULL DEFAULT 1,
    published_change INTEGER NOT NULL DEFAULT 0,
    snapshot_version INTEGER NOT NULL DEFAULT 0,
    snapshot_digest TEXT,
    published_at TEXT,
    event_seq INTEGER NOT NULL DEFAULT 0,
    state TEXT CHECK (state IS NULL OR json_valid(state)),
    state_at REAL,
    online INTEGER CHECK (online IN (0, 1)),
    online_at REAL,
    seen_at TEXT
) STRICT;
INSERT INTO car_sync (car_id) SELECT car_id FROM cars;

CREATE TRIGGER car_sync_new_car AFTER INSERT ON cars
BEGIN
    INSERT INTO car_sync (car_id) VALUES (NEW.car_id);
END;

CREATE TRIGGER car_sync_reservation_new AFTER INSERT ON reservations
BEGIN
    UPDATE car_sync SET change_seq = change_seq + 1 WHERE car_id = NEW.car_id;
END;

CREATE TRIGGER car_sync_reservation_written AFTER UPDATE ON reservations
BEGIN
    UPDATE car_sync SET change_seq = change_seq + 1 WHERE car_id IN (OLD.car_id, NEW.car_id);
END;

CREATE TRIGGER car_sync_card_new AFTER INSERT ON cards
BEGIN
    UPDATE car_sync SET change_seq = change_seq + 1 WHERE car_id IN (
        SELECT car_id FROM reservations WHERE driver_id = NEW.driver_id AND status IN {_LIVE});
END;

CREATE TRIGGER car_sync_card_written AFTER UPDATE ON cards
BEGIN
    UPDATE car_sync SET change_seq = change_seq + 1 WHERE car_id IN (
        SELECT car_id FROM reservations
        WHERE driver_id IN (OLD.driver_id, NEW.driver_id) AND status IN {_LIVE});
END;

CREATE TRIGGER car_sync_licence AFTER UPDATE OF licence_expiry ON drivers
WHEN OLD.licence_expiry IS NOT NEW.licence_expiry
BEGIN
    UPDATE car_sync SET change_seq = change_seq + 1 WHERE car_id IN (
        SELECT car_id FROM reservations WHERE driver_id = NEW.driver_id AND status IN {_LIVE});
END;

CREATE TABLE car_events (
    event_id TEXT PRIMARY KEY,
    car_id TEXT NOT NULL REFERENCES cars (car_id),
    seq INTEGER NOT NULL CHECK (seq >= 1),
    type TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL CHECK (json_valid(data)),
    received_at TEXT NOT NULL,
    applied_at TEXT,
    outcome TEXT
) STRICT;
CREATE INDEX car_events_car ON car_events (car_id, seq);
CREATE INDEX car_events_parked ON car_events (received_at) WHERE applied_at IS NULL;

CREATE TABLE car_commands (
    command_id TEXT PRIMARY KEY,
    car_id TEXT NOT NULL REFERENCES cars (car_id),
    name TEXT NOT NULL,
    args TEXT NOT NULL CHECK (json_valid(args)),
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'answered', 'timed_out')),
    result TEXT CHECK (result IS NULL OR json_valid(result)),
    answered_at TEXT
) STRICT;
CREATE INDEX car_commands_car ON car_commands (car_id, issued_at);

CREATE TABLE notifications (
    notification_id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN {_KINDS}),
    driver_id TEXT NOT NULL REFERENCES drivers (driver_id),
    reservation_id TEXT REFERENCES reservations (reservation_id),
    change_id INTEGER REFERENCES reservation_changes (change_id),
    card_hash TEXT,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    claimed_until TEXT,
    sent_at TEXT,
    last_error TEXT
) STRICT;
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX notifications_driver ON notifications (driver_id, notification_id);

CREATE TRIGGER notify_reservation_change AFTER INSERT ON reservation_changes
WHEN NEW.kind IN {_NOTIFY_CHANGES}
BEGIN
    INSERT INTO notifications (kind, driver_id, reservation_id, change_id, created_at,
                               next_attempt_at)
    SELECT {_KIND_OF_CHANGE.format(k="NEW.kind")}, driver_id, NEW.reservation_id, NEW.change_id,
           NEW.at, NEW.at
    FROM reservations WHERE reservation_id = NEW.reservation_id;
END;

CREATE TRIGGER notify_card_registered AFTER INSERT ON cards
BEGIN
    INSERT INTO notifications (kind, driver_id, card_hash, created_at, next_attempt_at)
    VALUES ('card_registered', NEW.driver_id, NEW.card_hash, NEW.registered_at,
            NEW.registered_at);
END;
"""

POSTGRESQL = f"""
CREATE TABLE car_sync (
    car_id text PRIMARY KEY REFERENCES cars (car_id),
    change_seq bigint NOT NULL DEFAULT 1,
    published_change bigint NOT NULL DEFAULT 0,
    snapshot_version bigint NOT NULL DEFAULT 0,
    snapshot_digest text,
    published_at timestamptz,
    event_seq bigint NOT NULL DEFAULT 0,
    state jsonb,
    state_at double precision,
    online boolean,
    online_at double precision,
    seen_at timestamptz
);
INSERT INTO car_sync (car_id) SELECT car_id FROM cars;

CREATE FUNCTION car_sync_new_car() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO car_sync (car_id) VALUES (NEW.car_id);
    RETURN NULL;
END $$;
CREATE TRIGGER car_sync_new_car AFTER INSERT ON cars
    FOR EACH ROW EXECUTE FUNCTION car_sync_new_car();

CREATE FUNCTION car_sync_reservation_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE car_sync SET change_seq = change_seq + 1 WHERE car_id = NEW.car_id;
    RETURN NULL;
END $$;
CREATE TRIGGER car_sync_reservation_new AFTER INSERT ON reservations
    FOR EACH ROW EXECUTE FUNCTION car_sync_reservation_new();

CREATE FUNCTION car_sync_reservation_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE car_sync SET change_seq = change_seq + 1 WHERE car_id IN (OLD.car_id, NEW.car_id);
    RETURN NULL;
END $$;
CREATE TRIGGER car_sync_reservation_written AFTER UPDATE ON reservations
    FOR EACH ROW EXECUTE FUNCTION car_sync_reservation_written();

CREATE FUNCTION car_sync_card_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE car_sync SET change_seq = change_seq + 1 WHERE car_id IN (
        SELECT car_id FROM reservations WHERE driver_id = NEW.driver_id AND status IN {_LIVE});
    RETURN NULL;
END $$;
CREATE TRIGGER car_sync_card_new AFTER INSERT ON cards
    FOR EACH ROW EXECUTE FUNCTION car_sync_card_new();

CREATE FUNCTION car_sync_card_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE car_sync SET change_seq = change_seq + 1 WHERE car_id IN (
        SELECT car_id FROM reservations
        WHERE driver_id IN (OLD.driver_id, NEW.driver_id) AND status IN {_LIVE});
    RETURN NULL;
END $$;
CREATE TRIGGER car_sync_card_written AFTER UPDATE ON cards
    FOR EACH ROW EXECUTE FUNCTION car_sync_card_written();

CREATE TRIGGER car_sync_licence AFTER UPDATE OF licence_expiry ON drivers
    FOR EACH ROW WHEN (OLD.licence_expiry IS DISTINCT FROM NEW.licence_expiry)
    EXECUTE FUNCTION car_sync_card_new();

CREATE TABLE car_events (
    event_id text PRIMARY KEY,
    car_id text NOT NULL REFERENCES cars (car_id),
    seq bigint NOT NULL CHECK (seq >= 1),
    type text NOT NULL,
    at double precision NOT NULL,
    data jsonb NOT NULL,
    received_at timestamptz NOT NULL,
    applied_at timestamptz,
    outcome text
);
CREATE INDEX car_events_car ON car_events (car_id, seq);
CREATE INDEX car_events_parked ON car_events (received_at) WHERE applied_at IS NULL;

CREATE TABLE car_commands (
    command_id text PRIMARY KEY,
    car_id text NOT NULL REFERENCES cars (car_id),
    name text NOT NULL,
    args jsonb NOT NULL,
    issued_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'answered', 'timed_out')),
    result jsonb,
    answered_at timestamptz
);
CREATE INDEX car_commands_car ON car_commands (car_id, issued_at);

CREATE TABLE notifications (
    notification_id bigserial PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN {_KINDS}),
    driver_id text NOT NULL REFERENCES drivers (driver_id),
    reservation_id text REFERENCES reservations (reservation_id),
    change_id bigint REFERENCES reservation_changes (change_id),
    card_hash text,
    created_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    claimed_until timestamptz,
    sent_at timestamptz,
    last_error text
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX notifications_driver ON notifications (driver_id, notification_id);

CREATE FUNCTION notify_reservation_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notifications (kind, driver_id, reservation_id, change_id, created_at,
                               next_attempt_at)
    SELECT {_KIND_OF_CHANGE.format(k="NEW.kind")}, driver_id, NEW.reservation_id, NEW.change_id,
           NEW.at, NEW.at
    FROM reservations WHERE reservation_id = NEW.reservation_id;
    RETURN NULL;
END $$;
CREATE TRIGGER notify_reservation_change AFTER INSERT ON reservation_changes
    FOR EACH ROW WHEN (NEW.kind IN {_NOTIFY_CHANGES})
    EXECUTE FUNCTION notify_reservation_change();

CREATE FUNCTION notify_card_registered() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notifications (kind, driver_id, card_hash, created_at, next_attempt_at)
    VALUES ('card_registered', NEW.driver_id, NEW.card_hash, NEW.registered_at,
            NEW.registered_at);
    RETURN NULL;
END $$;
CREATE TRIGGER notify_card_registered AFTER INSERT ON cards
    FOR EACH ROW EXECUTE FUNCTION notify_card_registered();
"""
