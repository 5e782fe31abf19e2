"""Initial schema: members, drivers, cards, stations, cars, reservations with their history,
trips and refuels, invoices, settings.

A reservation stores its car slot: its times widened by half the car buffer on each side
(`slot_start = start - buffer/2`, `slot_end = end + buffer/2`). Two live reservations of a car
break C-CAR-1 (less than the buffer between them) exactly when their half-open slots overlap, so
one range test serves both backends; on PostgreSQL an exclusion constraint enforces it, and a
second one keeps a driver's live reservations apart (C-DRV-1).
"""


def _glob(char_class: str, times: int) -> str:
    return f"[{char_class}]" * times


_MEMBER = _glob("A-Z0-9", 8)
_DRIVER = _MEMBER + _glob("0-9", 3)
_LIVE = "('reserved', 'in_use')"

SQLITE = f"""
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE members (
    member_id TEXT PRIMARY KEY CHECK (member_id GLOB '{_MEMBER}'),
    name TEXT NOT NULL,
    email TEXT,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'revoked')),
    password_hash TEXT,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE drivers (
    driver_id TEXT PRIMARY KEY CHECK (driver_id GLOB '{_DRIVER}'),
    member_id TEXT NOT NULL REFERENCES members (member_id),
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    licence_expiry TEXT,
    password_hash TEXT,
    created_at TEXT NOT NULL,
    CHECK (substr(driver_id, 1, 8) = member_id)
) STRICT;
CREATE INDEX drivers_member ON drivers (member_id);

CREATE TABLE cards (
    card_hash TEXT PRIMARY KEY CHECK (length(card_hash) = 64),
    driver_id TEXT NOT NULL REFERENCES drivers (driver_id),
    strong INTEGER NOT NULL DEFAULT 0 CHECK (strong IN (0, 1)),
    registered_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;
CREATE INDEX cards_driver ON cards (driver_id);

CREATE TABLE stations (
    station_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    lat REAL NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon REAL NOT NULL CHECK (lon BETWEEN -180 AND 180),
    radius_m REAL NOT NULL CHECK (radius_m > 0)
) STRICT;

CREATE TABLE cars (
    car_id TEXT PRIMARY KEY,
    station_id TEXT NOT NULL REFERENCES stations (station_id),
    name TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX cars_station ON cars (station_id);

CREATE TABLE reservations (
    reservation_id TEXT PRIMARY KEY,
    car_id TEXT NOT NULL REFERENCES cars (car_id),
    driver_id TEXT NOT NULL REFERENCES drivers (driver_id),
    member_id TEXT NOT NULL REFERENCES members (member_id),
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    buffer_minutes INTEGER NOT NULL CHECK (buffer_minutes >= 0),
    slot_start TEXT NOT NULL,
    slot_end TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('reserved', 'in_use', 'completed', 'cancelled')),
    change_count INTEGER NOT NULL DEFAULT 0,
    extension_count INTEGER NOT NULL DEFAULT 0,
    cancellation_fee INTEGER,
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CHECK (ends_at > starts_at),
    CHECK (slot_start <= starts_at AND slot_end >= ends_at)
) STRICT;
CREATE INDEX reservations_car_live ON reservations (car_id, slot_start)
    WHERE status IN {_LIVE};
CREATE INDEX reservations_driver ON reservations (driver_id, starts_at);
CREATE INDEX reservations_member ON reservations (member_id, starts_at);

CREATE TABLE reservation_changes (
    change_id INTEGER PRIMARY KEY AUTOINCREMENT,
    reservation_id TEXT NOT NULL REFERENCES reservations (reservation_id),
    at TEXT NOT NULL,
    kind TEXT NOT NULL
        CHECK (kind IN ('created', 'changed', 'extended', 'cancelled', 'started', 'returned')),
    old_start TEXT,
    old_end TEXT,
    new_start TEXT,
    new_end TEXT
) STRICT;
CREATE INDEX reservation_changes_reservation ON reservation_changes (reservation_id, change_id);

CREATE TABLE trips (
    reservation_id TEXT PRIMARY KEY REFERENCES reservations (reservation_id),
    started_at TEXT NOT NULL,
    started_by TEXT NOT NULL CHECK (started_by IN ('card', 'remote')),
    ended_at TEXT,
    odometer_start_km REAL,
    odometer_end_km REAL,
    fuel_start_pct REAL,
    fuel_end_pct REAL,
    lat_start REAL,
    lon_start REAL,
    lat_end REAL,
    lon_end REAL,
    overtime_minutes INTEGER NOT NULL DEFAULT 0 CHECK (overtime_minutes >= 0),
    unauthorised_extension INTEGER NOT NULL DEFAULT 0 CHECK (unauthorised_extension IN (0, 1))
) STRICT;

CREATE TABLE refuels (
    refuel_id INTEGER PRIMARY KEY AUTOINCREMENT,
    reservation_id TEXT NOT NULL REFERENCES trips (reservation_id),
    at TEXT NOT NULL,
    litres REAL NOT NULL CHECK (litres > 0),
    fuel_card INTEGER NOT NULL CHECK (fuel_card IN (0, 1))
) STRICT;
CREATE INDEX refuels_reservation ON refuels (reservation_id);

CREATE TABLE invoices (
    invoice_id TEXT PRIMARY KEY,
    member_id TEXT NOT NULL REFERENCES members (member_id),
    reservation_id TEXT REFERENCES reservations (reservation_id),
    issued_at TEXT NOT NULL,
    lines TEXT NOT NULL CHECK (json_valid(lines)),
    total INTEGER NOT NULL
) STRICT;
CREATE INDEX invoices_member ON invoices (member_id, issued_at);
"""

POSTGRESQL = f"""
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE settings (
    key text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE members (
    member_id text PRIMARY KEY CHECK (member_id ~ '^[A-Z0-9]{{8}}$'),
    name text NOT NULL,
    email text,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'revoked')),
    password_hash text,
    created_at timestamptz NOT NULL
);

CREATE TABLE drivers (
    driver_id text PRIMARY KEY CHECK (driver_id ~ '^[A-Z0-9]{{8}}[0-9]{{3}}$'),
    member_id text NOT NULL REFERENCES members (member_id),
    name text NOT NULL,
    email text NOT NULL,
    is_admin boolean NOT NULL DEFAULT false,
    licence_expiry date,
    password_hash text,
    created_at timestamptz NOT NULL,
    CHECK (substr(driver_id, 1, 8) = member_id)
);
CREATE INDEX drivers_member ON drivers (member_id);

CREATE TABLE cards (
    card_hash text PRIMARY KEY CHECK (card_hash ~ '^[0-9a-f]{{64}}$'),
    driver_id text NOT NULL REFERENCES drivers (driver_id),
    strong boolean NOT NULL DEFAULT false,
    registered_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX cards_driver ON cards (driver_id);

CREATE TABLE stations (
    station_id text PRIMARY KEY,
    name text NOT NULL,
    lat double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    radius_m double precision NOT NULL CHECK (radius_m > 0)
);

CREATE TABLE cars (
    car_id text PRIMARY KEY,
    station_id text NOT NULL REFERENCES stations (station_id),
    name text NOT NULL DEFAULT '',
    kind text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL
);
CREATE INDEX cars_station ON cars (station_id);

CREATE TABLE reservations (
    reservation_id text PRIMARY KEY,
    car_id text NOT NULL REFERENCES cars (car_id),
    driver_id text NOT NULL REFERENCES drivers (driver_id),
    member_id text NOT NULL REFERENCES members (member_id),
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    buffer_minutes integer NOT NULL CHECK (buffer_minutes >= 0),
    slot_start timestamptz NOT NULL,
    slot_end timestamptz NOT NULL,
    status text NOT NULL CHECK (status IN ('reserved', 'in_use', 'completed', 'cancelled')),
    change_count integer NOT NULL DEFAULT 0,
    extension_count integer NOT NULL DEFAULT 0,
    cancellation_fee integer,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT reservations_times CHECK (ends_at > starts_at),
    -- the slot is the times widened by half the buffer on each side, nothing else
    CONSTRAINT reservations_slot CHECK (
        slot_start = starts_at - buffer_minutes * interval '30 seconds'
        AND slot_end = ends_at + buffer_minutes * interval '30 seconds'
    ),
    -- C-CAR-1: live slots of one car never overlap ([) ranges: touching is allowed)
    CONSTRAINT reservations_car_buffer EXCLUDE USING gist (
        car_id WITH =, tstzrange(slot_start, slot_end) WITH &&
    ) WHERE (status IN {_LIVE}),
    -- C-DRV-1: a driver's live reservations never overlap, on any cars
    CONSTRAINT reservations_driver_overlap EXCLUDE USING gist (
        driver_id WITH =, tstzrange(starts_at, ends_at) WITH &&
    ) WHERE (status IN {_LIVE})
);
CREATE INDEX reservations_member ON reservations (member_id, starts_at);

CREATE TABLE reservation_changes (
    change_id bigserial PRIMARY KEY,
    reservation_id text NOT NULL REFERENCES reservations (reservation_id),
    at timestamptz NOT NULL,
    kind text NOT NULL
        CHECK (kind IN ('created', 'changed', 'extended', 'cancelled', 'started', 'returned')),
    old_start timestamptz,
    old_end timestamptz,
    new_start timestamptz,
    new_end timestamptz
);
CREATE INDEX reservation_changes_reservation ON reservation_changes (reservation_id, change_id);

CREATE TABLE trips (
    reservation_id text PRIMARY KEY REFERENCES reservations (reservation_id),
    started_at timestamptz NOT NULL,
    started_by text NOT NULL CHECK (started_by IN ('card', 'remote')),
    ended_at timestamptz,
    odometer_start_km double precision,
    odometer_end_km double precision,
    fuel_start_pct double precision,
    fuel_end_pct double precision,
    lat_start double precision,
    lon_start double precision,
    lat_end double precision,
    lon_end double precision,
    overtime_minutes integer NOT NULL DEFAULT 0 CHECK (overtime_minutes >= 0),
    unauthorised_extension boolean NOT NULL DEFAULT false
);

CREATE TABLE refuels (
    refuel_id bigserial PRIMARY KEY,
    reservation_id text NOT NULL REFERENCES trips (reservation_id),
    at timestamptz NOT NULL,
    litres double precision NOT NULL CHECK (litres > 0),
    fuel_card boolean NOT NULL
);
CREATE INDEX refuels_reservation ON refuels (reservation_id);

CREATE TABLE invoices (
    invoice_id text PRIMARY KEY,
    member_id text NOT NULL REFERENCES members (member_id),
    reservation_id text REFERENCES reservations (reservation_id),
    issued_at timestamptz NOT NULL,
    lines jsonb NOT NULL,
    total integer NOT NULL
);
CREATE INDEX invoices_member ON invoices (member_id, issued_at);
"""
