// The live fleet table (SPEC O-FLEET-1), and the state row of one car's page (O-CAR-1): one
// server-sent event stream per page; each event is one car's row, written into its cells; the
// fleet page's filters hide what does not match.
(function () {
  "use strict";
  const table = document.querySelector("table[data-live]");
  if (!table || !window.EventSource) return;
  const T = JSON.parse(table.dataset.texts);
  const only = { state: table.dataset.state, offline: table.dataset.offline === "1" };
  const bool = (v, yes, no) => (v === null || v === undefined ? "" : v ? T[yes] : T[no]);
  const span = (cls, text) => {
    const s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  };
  const cells = {
    trip_state: (r) => T.state[r.trip_state || ""],
    doors: (r) => {
      const out = [document.createTextNode(r.doors ? T[r.doors] : "")];
      if (r.doors_open && r.doors_open.length) {
        out.push(document.createTextNode(" "));
        out.push(span("warn", T.open.replace("{doors}", r.doors_open.join(", "))));
      }
      return out;
    },
    key: (r) => bool(r.key_present, "yes", "no"),
    brake: (r) => bool(r.parking_brake, "on", "off"),
    engine: (r) => bool(r.engine_running, "on", "off"),
    fuel: (r) => (r.fuel_pct === null || r.fuel_pct === undefined ? "" : Math.round(r.fuel_pct) + " %"),
    odometer: (r) => (r.odometer_km === null || r.odometer_km === undefined ? "" : r.odometer_km.toFixed(1) + " km"),
    position: (r) =>
      r.in_geofence === null || r.in_geofence === undefined
        ? ""
        : [span(r.in_geofence ? "good" : "warn", r.in_geofence ? T.inside : T.outside),
           document.createTextNode(" " + r.distance_m + " m")],
    firmware: (r) => r.firmware || "",
    online: (r) => [span(r.online ? "good" : "bad", r.online ? T.online : T.offline)],
    last_contact: (r) => r.last_contact || "",
  };
  const matches = (r) => (!only.state || r.trip_state === only.state) && (!only.offline || !r.online);
  // kept as a number: counting 10,000 rows at each report would cost more than the update
  let shown = table.querySelectorAll("tbody tr:not([hidden])").length;
  const apply = (r) => {
    const row = document.getElementById("car-" + r.car_id);
    if (!row || Number(row.dataset.seq) >= r.seq) return;
    row.dataset.seq = r.seq;
    row.dataset.state = r.trip_state || "";
    row.dataset.online = r.online ? "1" : "";
    for (const [name, render] of Object.entries(cells)) {
      const cell = row.querySelector('[data-cell="' + name + '"]');
      const value = render(r);
      cell.replaceChildren(...(Array.isArray(value) ? value : [document.createTextNode(value)]));
    }
    const hide = !matches(r);
    if (hide !== row.hidden) {
      row.hidden = hide;
      shown += hide ? -1 : 1;
      const count = document.getElementById("count-n");
      if (count) count.textContent = String(shown);
    }
    // the highlight restarts on the next frame, without forcing a layout of the whole table
    const heading = document.getElementById("car");
    if (heading && heading.dataset.car === r.car_id) heading.dataset.state = r.trip_state || "";
    row.classList.remove("changed");
    requestAnimationFrame(() => row.classList.add("changed"));
  };
  let since = Number(table.dataset.since);
  const open = () => {
    const q = new URLSearchParams({ since: String(since) });
    if (table.dataset.station) q.set("station", table.dataset.station);
    if (table.dataset.car) q.set("car", table.dataset.car);
    const stream = new EventSource("/console/fleet/stream?" + q);
    stream.onopen = () => { document.getElementById("live").hidden = false; };
    stream.onmessage = (e) => {
      const r = JSON.parse(e.data);
      since = Math.max(since, r.seq);
      apply(r);
    };
    stream.addEventListener("reload", () => { stream.close(); location.reload(); });
    stream.onerror = () => { document.getElementById("live").hidden = true; };
  };
  open();
})();
