// kagi live view: polls GET /api/car, streams the board's pins from GET /api/pins, and sends
// each control as POST /api/... ; every answer carries the car as it is after the control.
"use strict";

const POLL_MS = 500;
const STATES = {
  idle: "待機 idle",
  unlocked: "開錠 unlocked",
  in_use: "利用中 in use",
  returning: "キー返却中 key returned",
  forgotten_item_window: "忘れ物受付 forgotten-item window",
  security_locked: "セキュリティロック security locked",
};
const PATTERNS = {
  dark: "消灯 dark",
  green_blink: "緑点滅 green blink: tap to start",
  red_solid: "赤点灯 red: reading",
  three_colour_blink: "3色点滅 three-colour blink: waiting",
  orange_blink: "橙点滅 orange blink: tap to end",
  green_yellow_blink: "緑黄点滅 green+yellow: tap a card to register",
  forgotten_blink: "忘れ物点滅 forgotten-item blink",
  error: "エラー error",
};
const DOORS = ["driver", "passenger", "rear_left", "rear_right", "tailgate"];

let car = null; // the last snapshot shown
let pinsLive = false; // the pin stream is connected: the LEDs and hazards come from it
let epoch = 0; // bumped by each control's answer: an older poll's answer is not shown

const $ = (id) => document.getElementById(id);
const hhmmss = (iso) => (iso ? iso.slice(11, 19) : "");
const hhmm = (iso) => (iso ? iso.slice(11, 16) : "");

function text(id, value) {
  const el = $(id);
  if (el && el.textContent !== value) el.textContent = value;
}

function flag(id, on, yes, no) {
  const el = $(id);
  text(id, on ? yes : no);
  el.classList.toggle("yes", on);
  el.classList.toggle("no", !on);
}

function left(seconds) {
  if (seconds <= 0) return "期限 due";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

function item(tag, parts) {
  const el = document.createElement(tag);
  for (const [cls, value] of parts) {
    const span = document.createElement(cls === "code" ? "code" : "span");
    if (cls !== "code") span.className = cls;
    span.textContent = value;
    el.append(span, " ");
  }
  return el;
}

function fill(list, rows, empty) {
  const target = list.tagName === "TABLE" ? list.tBodies[0] : list;
  target.replaceChildren(...rows);
  if (!rows.length) {
    const none = document.createElement(list.tagName === "TABLE" ? "tr" : "li");
    none.className = "empty";
    none.textContent = empty;
    target.append(none);
  }
}

function renderPins(pins) {
  for (const colour of ["red", "green", "yellow"]) {
    const lit = Boolean(pins[`led_${colour}`]);
    $(`led-${colour}`).classList.toggle("lit", lit);
    $(`svg-led-${colour}`).classList.toggle("lit", lit);
  }
  for (const corner of ["fl", "fr", "rl", "rr"]) {
    $(`svg-hazard-${corner}`).classList.toggle("lit", Boolean(pins.hazard));
  }
  $("hazard-dot").classList.toggle("lit", Boolean(pins.hazard));
}

function render(c) {
  car = c;
  text("car-id", c.car_id);
  text("station", c.station);
  text("clock-date", c.clock.car.slice(0, 10));
  text("clock-time", hhmmss(c.clock.car));
  const run = $("clock-run");
  text("clock-run", c.clock.running ? "進行中 running" : "停止 stopped");
  run.className = `pill ${c.clock.running ? "on" : "off"}`;
  if (c.sites) {
    $("phone-site").href = c.sites.phone;
    $("console-site").href = c.sites.console;
  }
  const cloud = $("cloud");
  text("cloud", c.cloud.connected ? "クラウド接続 cloud online" : "クラウド未接続 cloud offline");
  cloud.className = `pill ${c.cloud.connected ? "ok" : "bad"}`;
  const board = $("board");
  text("board", c.board_up ? "基板 board up" : "基板 board down");
  board.className = `pill ${c.board_up ? "ok" : "bad"}`;
  text("busy", c.busy ? `処理中 busy: ${c.busy}` : "");

  text("state", STATES[c.state] || c.state);
  $("state").dataset.state = c.state;
  text("overlay", c.overlay === "off" ? "" : `カード登録中 ${c.overlay}`);

  const locked = c.lock === "locked";
  text("lock", c.lock === "unknown" ? "不明 unknown" : locked ? "施錠 locked" : "開錠 unlocked");
  $("lock").dataset.lock = c.lock;
  text("svg-lock", c.lock === "unknown" ? "?" : locked ? "施錠 LOCKED" : "開錠 UNLOCKED");
  $("svg-lock").classList.toggle("unlocked", c.lock === "unlocked");
  text("hazard", `${c.hazard.on ? "点灯 on" : "消灯 off"} · blinks so far: ${c.hazard.blinks}`);
  const keyText = c.key.in_box
    ? `キーあり key in, ${c.key.position === "return" ? "返却 return" : "貸出 lend"}`
    : "キーなし key out (貸出)";
  text("key", keyText);
  $("key").dataset.inBox = String(c.key.in_box);
  $("svg-key").classList.toggle("out", !c.key.in_box);
  flag("immobiliser", c.immobilised, "作動 on (engine blocked)", "解除 off");
  flag("engine", c.engine, "始動中 running", "停止 stopped");
  flag("brake", !c.brake, "解除 released", "作動 set");
  flag("lights", c.lights, "点灯 on", "消灯 off");
  for (const door of DOORS) {
    const open = Boolean(c.doors[door]);
    flag(`door-${door}`, open, "開 open", "閉 closed");
    $(`svg-door-${door}`).classList.toggle("open", open);
    const btn = $(`btn-door-${door}`);
    btn.classList.toggle("on", open);
    btn.title = open ? "close it / 閉める" : "open it / 開ける";
  }

  text("led-pattern", PATTERNS[c.reader.pattern] || c.reader.pattern);
  $("led-pattern").dataset.pattern = c.reader.pattern;
  if (!pinsLive) renderPins(c.pins);

  const t = c.trip;
  text(
    "trip",
    t
      ? `Bob ${t.driver_id} · started ${hhmm(t.started_at)} by ${t.started_by}` +
          ` · ends ${hhmm(t.end)} · key taken: ${t.key_taken ? "yes" : "no"}` +
          ` · card end: ${t.card_end ? "yes" : "no"}` +
          (t.ended_at ? ` · ended ${hhmm(t.ended_at)}` : "") +
          (t.forgotten_used ? " · forgotten-item unlock used" : "")
      : "利用なし no trip",
  );
  fill(
    $("timers"),
    c.timers.map((tm) => {
      const row = document.createElement("tr");
      row.dataset.timer = tm.name;
      for (const [cls, value] of [
        ["", `${tm.ja} `],
        ["en", tm.en],
        ["", hhmmss(tm.at)],
        ["left", left(tm.left_s)],
      ]) {
        const cell = document.createElement("td");
        cell.className = cls;
        cell.textContent = value;
        row.append(cell);
      }
      return row;
    }),
    "なし none",
  );
  const r = c.reservation;
  text(
    "reservation",
    r
      ? `${r.driver_id} · ${r.start.slice(0, 10)} ${hhmm(r.start)}–${hhmm(r.end)} · ${r.status}` +
          ` · window opens ${hhmm(r.window_opens)}, card until ${hhmm(r.card_until)}` +
          ` · extensions ${r.extensions} · ¥${r.fee_yen}`
      : "予約なし none",
  );
  fill(
    $("prompts"),
    c.prompts.map((p) => item("li", [["code", p.id], ["", p.ja], ["en", p.en]])),
    "なし none",
  );
  fill(
    $("mails"),
    c.mails.map((m) => item("li", [["", m.subject], ["en", `→ ${m.to}`]])),
    "なし none",
  );

  const toggles = {
    "btn-key": [!c.key.in_box, c.key.in_box ? "キーを抜く take key (貸出)" : "キーを戻す return key (返却)"],
    "btn-brake": [c.brake, c.brake ? "ブレーキ解除 release brake" : "サイドブレーキ set brake"],
    "btn-engine": [c.engine, c.engine ? "エンジン停止 stop engine" : "エンジン始動 start engine"],
    "btn-lights": [c.lights, c.lights ? "ライト消灯 lights off" : "ライト点灯 lights on"],
    "btn-signal": [!c.cloud.signal, c.cloud.signal ? "電波を切る cut signal" : "電波を戻す restore signal"],
    "btn-run": [c.clock.running, c.clock.running ? "時間を止める stop time" : "時間を進める let time run"],
  };
  for (const [id, [on, label]] of Object.entries(toggles)) {
    text(id, label);
    $(id).classList.toggle("on", on);
  }
}

function toggleBody(button) {
  switch (button.dataset.toggle) {
    case "door":
      return ["/api/door", { door: button.dataset.door, open: !car.doors[button.dataset.door] }];
    case "key":
      return ["/api/key", { in_box: !car.key.in_box }];
    case "brake":
      return ["/api/brake", { on: !car.brake }];
    case "engine":
      return ["/api/engine", { running: !car.engine }];
    case "lights":
      return ["/api/lights", { on: !car.lights }];
    case "signal":
      return ["/api/signal", { on: !car.cloud.signal }];
    case "run":
      return ["/api/clock/run", { on: !car.clock.running }];
  }
  throw new Error(`unknown toggle ${button.dataset.toggle}`);
}

function showMessage(message, error) {
  const box = $("message");
  box.textContent = message;
  box.classList.toggle("error", Boolean(error));
  box.dataset.kind = error ? "error" : "done";
}

// what a control's answer says, and whether it is a refusal (the car's answer to a phone
// operation may be one: the end refused with its failed checks)
function summary(answer) {
  const r = answer.result;
  if (r === null || r === undefined) return ["", false];
  if (r.state) return [` → ${STATES[r.state] || r.state}`, false];
  if (r.id && r.start) {
    return [` → ${r.start.slice(0, 10)} ${hhmm(r.start)}–${hhmm(r.end)} (${r.status})`, false];
  }
  if (typeof r.ok === "boolean") {
    const d = r.data || {};
    const notes = [
      d.failed && d.failed.length ? `failed: ${d.failed.join(", ")}` : "",
      d.warnings && d.warnings.length ? `warnings: ${d.warnings.join(", ")}` : "",
    ].filter(Boolean);
    const verdict = r.ok ? "the car did it" : `the car refused (${r.code})`;
    return [` → ${verdict}${notes.length ? ` — ${notes.join("; ")}` : ""}`, !r.ok];
  }
  return [` → ${JSON.stringify(r)}`, false];
}

async function send(button, path, body) {
  button.classList.add("pending");
  showMessage(`… ${button.textContent.trim()}`, false);
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body ?? {}),
    });
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      const e = (answer && answer.error) || { message: `${response.status} ${response.statusText}` };
      showMessage(`✘ ${e.message}${e.message_ja ? ` / ${e.message_ja}` : ""} [${e.code || response.status}]`, true);
      return;
    }
    epoch += 1;
    render(answer.car);
    const [said, refused] = summary(answer);
    showMessage(`${refused ? "✘" : "✔"} ${answer.done}${said}`, refused);
  } catch (err) {
    showMessage(`✘ the live view does not answer: ${err}`, true);
  } finally {
    button.classList.remove("pending");
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button || !car) return;
  if (button.dataset.post) {
    send(button, button.dataset.post, button.dataset.body ? JSON.parse(button.dataset.body) : {});
  } else if (button.dataset.toggle) {
    const [path, body] = toggleBody(button);
    send(button, path, body);
  }
});

async function poll() {
  const seen = epoch;
  try {
    const response = await fetch("/api/car", { cache: "no-store" });
    const answer = await response.json();
    if (!response.ok) {
      showMessage(`✘ ${answer.error ? answer.error.message : response.status}`, true);
    } else if (seen === epoch) {
      const first = car === null;
      render(answer);
      if (first) showMessage("準備完了 ready: tap Bob's card to start / Bob のカードをタッチして利用開始", false);
    }
  } catch (err) {
    text("cloud", "live view offline");
    $("cloud").className = "pill bad";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function streamPins() {
  const source = new EventSource("/api/pins");
  source.onopen = () => {
    pinsLive = true;
  };
  source.onmessage = (event) => {
    pinsLive = true;
    renderPins(JSON.parse(event.data));
  };
  source.onerror = () => {
    pinsLive = false; // EventSource reconnects by itself; the polls show the pins meanwhile
  };
}

poll();
streamPins();
