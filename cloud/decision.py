"""What a rule check answers: ok or not, a stable reason code, a message in Japanese and English,
and the fee where one applies.

The codes are part of the API (clients branch on them); the messages are for people and may be
reworded. `CODES` lists every refusal code with its two message templates; an accepted request
has the code "ok" and a message from `OK`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cloud.policy import Deadline, duration_parts

# code -> (日本語, English); templates take the parameters the rule passes
CODES: dict[str, tuple[str, str]] = {
    "not_a_driver": (
        "会員IDでは予約・操作できません。運転者IDでログインしてください。",
        "A member ID cannot reserve or operate cars; log in with a driver ID.",
    ),
    "not_permitted": (
        "ほかの運転者の予約は操作できません。",
        "This is another driver's reservation.",
    ),
    "membership_revoked": (
        "会員資格が取り消されているため予約できません。",
        "The membership has been revoked; no reservations can be made.",
    ),
    "grid": (
        "予約の開始・終了時刻は{grid_ja}単位で指定してください。",
        "Reservations start and end on {grid_en} marks.",
    ),
    "too_short": (
        "予約時間は{min_ja}以上にしてください。",
        "A reservation must be at least {min_en} long.",
    ),
    "too_long": (
        "予約時間は最大{max_ja}です。",
        "A reservation can be at most {max_en} long.",
    ),
    "start_in_past": (
        "過去の時刻から始まる予約はできません。",
        "A reservation cannot start in the past.",
    ),
    "beyond_horizon": (
        "{last}より先の予約はまだできません。",
        "Reservations can be made up to {last} for now.",
    ),
    "licence_expired": (
        "運転免許証の有効期限（{expiry}）を過ぎる予約・利用はできません。",
        "A reservation cannot end after the driving licence expires ({expiry}).",
    ),
    "member_limit": (
        "予約は1会員あたり{limit}件までです（登録運転者全員の合計）。",
        "A member can hold at most {limit} open reservations, all its drivers together.",
    ),
    "penalty_limit": (
        "無断延長があったため、{until}まで予約は{limit}件までに制限されています。",
        "After an unauthorised extension, the member can hold at most {limit} open "
        "reservation(s) until {until}.",
    ),
    "driver_overlap": (
        "同じ時間帯にほかの予約があります。同一運転者で重なる予約はできません。",
        "The driver already has a reservation at that time.",
    ),
    "car_buffer": (
        "この車は前後の予約と重なります（ほかの予約の前後{buffer_ja}は予約できません）。",
        "The car is taken: no reservation within {buffer_en} of another one on the same car.",
    ),
    "not_changeable": (
        "この予約は変更できません（利用開始後・終了・取消済み）。",
        "This reservation can no longer be changed (started, finished or cancelled).",
    ),
    "change_limit": (
        "予約の変更は{limit}回までです。",
        "A reservation can be changed at most {limit} time(s).",
    ),
    "change_deadline": (
        "予約の変更は{deadline_ja}までです。",
        "Changes are possible only until {deadline_en}.",
    ),
    "unchanged": (
        "予約時間が変わっていません。",
        "The new times are the same as the old ones.",
    ),
    "not_cancellable": (
        "この予約はキャンセルできません（利用開始後・終了・取消済み）。",
        "This reservation can no longer be cancelled (started, finished or cancelled).",
    ),
    "cancel_deadline": (
        "キャンセルの受付期限（{deadline_ja}）を過ぎています。窓口にお問い合わせください。",
        "The cancellation deadline ({deadline_en}) has passed; please contact the office.",
    ),
    "not_in_use": (
        "延長はご利用中（利用開始後）のみできます。",
        "A reservation can be extended only during its trip.",
    ),
    "end_passed": (
        "予約終了時刻を過ぎているため延長できません。",
        "The end time has passed; the reservation can no longer be extended.",
    ),
    "extension_limit": (
        "延長は{limit}回までです。",
        "A trip can be extended at most {limit} time(s).",
    ),
    "not_longer": (
        "延長後の終了時刻は現在の終了時刻より後にしてください（短縮はできません）。",
        "The new end must be later than the current end (no shortening).",
    ),
    "extension_conflict": (
        "次の予約が入っているため延長できません（次の予約の{buffer_ja}前まで）。",
        "The car is booked next: the end can be extended only up to {buffer_en} before the "
        "next reservation.",
    ),
}

# what the limit codes say when the policy allows none at all
NONE_ALLOWED: dict[str, tuple[str, str]] = {
    "change_limit": (
        "この予約の時間は変更できません。",
        "The times of this reservation cannot be changed.",
    ),
    "extension_limit": ("この予約は延長できません。", "This reservation cannot be extended."),
}

# what "ok" says, per operation
OK: dict[str, tuple[str, str]] = {
    "reserve": (
        "予約できます。時間料金は{fee:,}円です。",
        "Can be reserved. The time fee is ¥{fee:,}.",
    ),
    "change": (
        "変更できます。変更後の時間料金は{fee:,}円です。",
        "Can be changed. The time fee becomes ¥{fee:,}.",
    ),
    "cancel": (
        "キャンセルできます。キャンセル料は{fee:,}円です。",
        "Can be cancelled. The cancellation fee is ¥{fee:,}.",
    ),
    "extend": (
        "延長できます。延長後の時間料金は{fee:,}円です。",
        "Can be extended. The time fee becomes ¥{fee:,}.",
    ),
}


@dataclass(frozen=True)
class Decision:
    """The answer of a rule check. `code` is "ok" when `ok`; `fee` is the time fee of the
    reservation as it would be (reserve, change, extend) or the cancellation fee (cancel), in
    yen; `conflict_id` names the reservation in the way, when one is."""

    ok: bool
    code: str
    message_ja: str
    message_en: str
    fee: int | None = None
    conflict_id: str | None = None


def allow(what: str, fee: int) -> Decision:
    """An accepted `what` (reserve, change, cancel, extend) with its fee."""
    ja, en = OK[what]
    return Decision(True, "ok", ja.format(fee=fee), en.format(fee=fee), fee=fee)


def refuse(code: str, conflict_id: str | None = None, **params: object) -> Decision:
    ja, en = (
        NONE_ALLOWED[code] if params.get("limit") == 0 and code in NONE_ALLOWED else CODES[code]
    )
    return Decision(False, code, ja.format(**params), en.format(**params), conflict_id=conflict_id)


def duration_ja(d: dt.timedelta) -> str:
    days, hours, minutes, seconds = duration_parts(d)
    parts = [(days, "日"), (hours, "時間"), (minutes, "分"), (seconds, "秒")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0分"


def duration_en(d: dt.timedelta) -> str:
    days, hours, minutes, seconds = duration_parts(d)
    parts = [(days, "day"), (hours, "hour"), (minutes, "minute"), (seconds, "second")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words) or "0 minutes"


def deadline_ja(d: Deadline) -> str:
    if d.before is not None:
        return "予約開始時刻" if not d.before else f"予約開始時刻の{duration_ja(d.before)}前"
    if d.days_before == 0:
        return "利用日当日"
    return "利用日の前日" if d.days_before == 1 else f"利用日の{d.days_before}日前"


def deadline_en(d: Deadline) -> str:
    if d.before is not None:
        return "the start" if not d.before else f"{duration_en(d.before)} before the start"
    if d.days_before == 0:
        return "the end of the day of use"
    if d.days_before == 1:
        return "the end of the day before the day of use"
    return f"the end of the day {d.days_before} days before the day of use"
