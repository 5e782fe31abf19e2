"""The voice prompts (SPEC U-FB-3, U-FB-4): each has an ID, a clip number and its text.

The board plays a prompt by clip number; the ID is what the core and the tests speak.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptText:
    id: str
    clip: int
    ja: str
    en: str


CATALOGUE: tuple[PromptText, ...] = (
    PromptText("start_ok", 1, "ご利用を開始しました。", "Your trip has started."),
    PromptText("end_ok", 2, "ご利用を終了しました。", "Your trip has ended."),
    PromptText(
        "end_refused",
        3,
        "利用終了できません。以下を確認してください。",
        "The trip cannot end yet. Please check the following.",
    ),
    PromptText("check_engine", 4, "エンジンを停止してください。", "Please stop the engine."),
    PromptText(
        "check_key",
        5,
        "エンジンキーをキーボックスに差し込み、返却に合わせてください。",
        "Please put the key in the key box and turn it to return.",
    ),
    PromptText(
        "check_brake", 6, "サイドブレーキを引いてください。", "Please set the parking brake."
    ),
    PromptText(
        "check_doors", 7, "すべてのドアを確実に閉めてください。", "Please close all doors firmly."
    ),
    PromptText("check_lights", 8, "ライトが点いています。", "The lights are on."),
    PromptText(
        "check_position",
        9,
        "ステーションの外にいます。所定の位置に駐車してください。",
        "The car is not at its station. Please park in its space.",
    ),
    PromptText(
        "return_reminder",
        10,
        "返却時刻の10分前です。延長が必要な場合は安全な場所に停めてから操作してください。",
        "Your return time is in 10 minutes. To extend, stop somewhere safe first.",
    ),
    PromptText(
        "overtime",
        11,
        "返却時刻を過ぎています。",
        "Your return time has passed.",
    ),
    PromptText(
        "security_lock_imminent",
        12,
        "まもなくセキュリティロックがかかります。エンジンキーを貸出に合わせて抜いてください。",
        "The car will lock soon. Turn the key to lend and take it out.",
    ),
    PromptText(
        "security_locked",
        13,
        "セキュリティロックがかかりました。",
        "The car has been locked for security.",
    ),
    PromptText(
        "card_denied", 14, "このカードはご利用いただけません。", "This card cannot be used."
    ),
    PromptText("card_registered", 15, "カードを登録しました。", "Your card has been registered."),
    PromptText(
        "use_phone",
        16,
        "カードリーダーではご利用いただけません。スマートフォンから操作してください。",
        "The card reader cannot do this now. Please use your phone.",
    ),
    PromptText("forgotten_unlocked", 17, "忘れ物ドアを開錠しました。", "Doors unlocked once."),
    PromptText("forgotten_locked", 18, "ドアを施錠しました。", "Doors locked."),
    PromptText(
        "registration", 19, "登録するカードをタッチしてください。", "Tap the card to register."
    ),
)

BY_ID = {p.id: p for p in CATALOGUE}

# The prompt that names each failed end check (U-END-4).
CHECK_PROMPTS = {
    "engine": "check_engine",
    "key": "check_key",
    "brake": "check_brake",
    "doors": "check_doors",
    "lights": "check_lights",
    "position": "check_position",
}
