"""The pages: forced password changes, staff accounts and their audit log, drivers' change
applications, damage reports with photos, refuels from receipts, console alerts.

- `members.password_must_change`, `drivers.password_must_change`: set with an initial password
  (sent by mail), cleared when the driver chooses their own (SPEC P-WEB-6).
- `staff`: the console's accounts (O-ROLE-1): `operator` (everything), `viewer` (reads only),
  `technician` for one car (`car_id`) and a time window (`window_start`…`window_end`).
- `audit_log`: every staff action, who, when, what and the result; triggers refuse any UPDATE or
  DELETE, so nobody can edit it, not even through SQL of the cloud's own code.
- `change_applications`: what a driver asks the operator to change (address, licence…), decided
  on the console (P-WEB-6).
- `damage_reports`, `damage_photos`: a driver's report before driving (P-WEB-7), kept with the
  reservation.
- `refuels` gains the receipt's amount, its kind (`receipt`: paid with the car's fuel card,
  F-FUEL-1; `emergency`: paid by the driver, to reimburse) and who recorded it (O-ADM-1).
- `alerts`: what the console must show the operator (O-ALERT-1), each once per cause (`key`),
  until acknowledged.
"""

_STAFF_ROLES = "('operator', 'viewer', 'technician')"
_APPLICATION_STATUS = "('pending', 'approved', 'rejected')"
_REFUEL_KINDS = "('receipt', 'emergency')"

SQLITE = f"""
ALTER TABLE members ADD COLUMN password_must_change INTEGER NOT NULL DEFAULT 0
    CHECK (password_must_change IN (0, 1));
ALTER TABLE drivers ADD COLUMN password_must_change INTEGER NOT NULL DEFAULT 0
    CHECK (password_must_change IN (0, 1));

CREATE TABLE staff (
    staff_id TEXT PRIMARY KEY CHECK (length(staff_id) BETWEEN 1 AND 64),
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN {_STAFF_ROLES}),
    password_hash TEXT,
    car_id TEXT REFERENCES cars (car_id),
    window_start TEXT,
    window_end TEXT,
    disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at TEXT NOT NULL,
    CHECK ((role = 'technician') = (car_id IS NOT NULL AND window_start IS NOT NULL
                                    AND window_end IS NOT NULL)),
    CHECK (window_end IS NULL OR window_end > window_start)
) STRICT;

CREATE TABLE audit_log (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    staff_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(detail)),
    result TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_at ON audit_log (at);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log cannot be edited');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log cannot be edited');
END;

CREATE TABLE change_applications (
    application_id INTEGER PRIMARY KEY AUTOINCREMENT,
    driver_id TEXT NOT NULL REFERENCES drivers (driver_id),
    fields TEXT NOT NULL CHECK (json_valid(fields)),
    note TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN {_APPLICATION_STATUS}),
    created_at TEXT NOT NULL,
    decided_at TEXT,
    decided_by TEXT,
    reason TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX change_applications_status ON change_applications (status, created_at);

CREATE TABLE damage_reports (
    report_id INTEGER PRIMARY KEY AUTOINCREMENT,
    reservation_id TEXT NOT NULL REFERENCES reservations (reservation_id),
    driver_id TEXT NOT NULL REFERENCES drivers (driver_id),
    car_id TEXT NOT NULL REFERENCES cars (car_id),
    kind TEXT NOT NULL CHECK (kind IN ('damage', 'dirt', 'flat_tyre', 'other')),
    note TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX damage_reports_car ON damage_reports (car_id, created_at);

CREATE TABLE damage_photos (
    photo_id INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id INTEGER NOT NULL REFERENCES damage_reports (report_id),
    content_type TEXT NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
    data BLOB NOT NULL
) STRICT;
CREATE INDEX damage_photos_report ON damage_photos (report_id);

ALTER TABLE refuels ADD COLUMN amount_yen INTEGER CHECK (amount_yen IS NULL OR amount_yen >= 0);
ALTER TABLE refuels ADD COLUMN kind TEXT NOT NULL DEFAULT 'receipt'
    CHECK (kind IN {_REFUEL_KINDS});
ALTER TABLE refuels ADD COLUMN recorded_by TEXT;

CREATE TABLE alerts (
    alert_id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    car_id TEXT,
    message TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    acknowledged_at TEXT,
    acknowledged_by TEXT
) STRICT;
CREATE INDEX alerts_open ON alerts (raised_at) WHERE acknowledged_at IS NULL;
"""

POSTGRESQL = f"""
ALTER TABLE members ADD COLUMN password_must_change boolean NOT NULL DEFAULT false;
ALTER TABLE drivers ADD COLUMN password_must_change boolean NOT NULL DEFAULT false;

CREATE TABLE staff (
    staff_id text PRIMARY KEY CHECK (length(staff_id) BETWEEN 1 AND 64),
    name text NOT NULL,
    role text NOT NULL CHECK (role IN {_STAFF_ROLES}),
    password_hash text,
    car_id text REFERENCES cars (car_id),
    window_start timestamptz,
    window_end timestamptz,
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    CHECK ((role = 'technician') = (car_id IS NOT NULL AND window_start IS NOT NULL
                                    AND window_end IS NOT NULL)),
    CHECK (window_end IS NULL OR window_end > window_start)
);

CREATE TABLE audit_log (
    entry_id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    staff_id text NOT NULL,
    action text NOT NULL,
    target text NOT NULL DEFAULT '',
    detail jsonb NOT NULL DEFAULT '{{}}',
    result text NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE FUNCTION audit_log_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log cannot be edited';
END $$;
CREATE TRIGGER audit_log_no_edit BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_frozen();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_frozen();

CREATE TABLE change_applications (
    application_id bigserial PRIMARY KEY,
    driver_id text NOT NULL REFERENCES drivers (driver_id),
    fields jsonb NOT NULL,
    note text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'pending' CHECK (status IN {_APPLICATION_STATUS}),
    created_at timestamptz NOT NULL,
    decided_at timestamptz,
    decided_by text,
    reason text NOT NULL DEFAULT ''
);
CREATE INDEX change_applications_status ON change_applications (status, created_at);

CREATE TABLE damage_reports (
    report_id bigserial PRIMARY KEY,
    reservation_id text NOT NULL REFERENCES reservations (reservation_id),
    driver_id text NOT NULL REFERENCES drivers (driver_id),
    car_id text NOT NULL REFERENCES cars (car_id),
    kind text NOT NULL CHECK (kind IN ('damage', 'dirt', 'flat_tyre', 'other')),
    note text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL
);
CREATE INDEX damage_reports_car ON damage_reports (car_id, created_at);

CREATE TABLE damage_photos (
    photo_id bigserial PRIMARY KEY,
    report_id bigint NOT NULL REFERENCES damage_reports (report_id),
    content_type text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
    data bytea NOT NULL
);
CREATE INDEX damage_photos_report ON damage_photos (report_id);

ALTER TABLE refuels ADD COLUMN amount_yen integer CHECK (amount_yen IS NULL OR amount_yen >= 0);
ALTER TABLE refuels ADD COLUMN kind text NOT NULL DEFAULT 'receipt'
    CHECK (kind IN {_REFUEL_KINDS});
ALTER TABLE refuels ADD COLUMN recorded_by text;

CREATE TABLE alerts (
    alert_id bigserial PRIMARY KEY,
    key text NOT NULL UNIQUE,
    kind text NOT NULL,
    car_id text,
    message text NOT NULL,
    raised_at timestamptz NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by text
);
CREATE INDEX alerts_open ON alerts (raised_at) WHERE acknowledged_at IS NULL;
"""
