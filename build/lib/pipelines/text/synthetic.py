"""Synthetic customer-support messages: the text project's stand-in when no labelled files are found.

Five intents that tie into the churn story (a customer about to cancel, disputing a bill, with a broken
service, asking to upgrade, or happy). Each message is a template of its intent filled with synonyms,
plan and product names, amounts and dates, often wrapped in a greeting and a closing and sometimes
followed by a sentence of another intent (praise plus a billing question); then typos, mixed case and a
little label noise. A bag-of-words model learns most of it but not all. For development and CI only:
metrics on it say nothing about real messages.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

INTENTS = ("cancel", "billing_dispute", "technical_problem", "upgrade", "praise")
LABEL_NOISE = 0.03  # share of messages whose label is replaced by another intent
ASIDE_RATE = 0.3  # share of messages with a sentence of another intent after the main one
GREETING_RATE, CLOSING_RATE = 0.6, 0.5
TYPO_MESSAGE_RATE, TYPO_CHAR_RATE = 0.4, 0.02  # messages with typos, and letters hit in those
CASE_STYLES = {"as written": 0.7, "lower": 0.22, "upper": 0.04, "title": 0.04}

TEMPLATES = {
    "cancel": (
        "I want to {cancel} my {plan} plan.",
        "Please {cancel} my account effective {date}.",
        "How do I {cancel} my subscription? I am moving to {competitor}.",
        "I'd like to {cancel} the {product} service, it's {expensive} for what I get.",
        "I have been a customer for {months} months but I am {leaving}.",
        "{competitor} offered me a better deal so please {cancel} my contract.",
        "Can you {cancel} my {plan} plan before the next billing cycle on {date}?",
        "I no longer need the {product}, please {cancel} it and stop the auto-renewal.",
        "What is the early termination fee if I {cancel} now? I'm {leaving}.",
        "Not happy anymore, I'm {leaving}. {cancel_cap} everything on my account.",
    ),
    "billing_dispute": (
        "I was {charged} {amount} on {date} but my {plan} plan is only {amount2} a month.",
        "Why is my {bill} {amount} this month? That is not what I agreed to.",
        "There is a {charge} on my {bill} that I don't recognize.",
        "I was {charged} twice for the {product} in {month}.",
        "Please refund the {amount} late fee, I paid on time on {date}.",
        "My {bill} went up by {amount} without any notice.",
        "You {charged} my card {amount} after I returned the {product}.",
        "The promo price of {amount2} was supposed to last {months} months, now I pay {amount}.",
        "I dispute the {charge} of {amount} on my last {bill}.",
        "Can someone explain the {amount} {charge} for {product} rental? I never had one.",
    ),
    "technical_problem": (
        "My {internet} keeps dropping every few {minutes}.",
        "The {product} is {broken} since {date}.",
        "I can't log in to the {product}, it says error {code}.",
        "The {internet} is {slow}, I'm getting {speed} Mbps on the {plan} plan.",
        "No signal at all since {date}, I restarted the {product} {times} times.",
        "The {product} shows a red light and nothing works.",
        "Calls keep failing on my {plan} line, they cut out after a minute.",
        "After the update the {product} freezes and I get error {code}.",
        "My {internet} has been down for {hours} hours, is there an outage?",
        "Streaming buffers all evening, the {internet} is {slow} and the {product} reboots itself.",
    ),
    "upgrade": (
        "I would like to {upgrade} to the {plan} plan.",
        "What does it cost to {upgrade} from {plan2} to {plan}?",
        "Can I add the {product} to my account?",
        "I need more data, is there a bigger plan than {plan2}?",
        "Do you have a {faster} package? I want to {upgrade} before {date}.",
        "I want to {upgrade} my {plan2} plan and add a second line.",
        "Is the {plan} plan available at my address? I'd like to switch to it.",
        "Please {upgrade} me to {plan} starting {date}, whatever the price.",
        "Interested in the {plan} bundle with the {product}, how do I sign up?",
        "My family needs more, can we {upgrade} to {plan} with {times} extra lines?",
    ),
    "praise": (
        "Just wanted to say the {product} works {great}.",
        "{agent} on the support line was {great}, thank you!",
        "I've been with you {months} months and the service is {great}.",
        "The technician fixed everything in {minutes_n} minutes, {great} job.",
        "Thanks for the quick help with my {plan} plan, really {great} service.",
        "Your {internet} has been rock solid, no complaints at all.",
        "Love the new {product}, setup took five minutes.",
        "{agent} went above and beyond today. {great_cap} customer service.",
        "Kudos to the team, the {plan} plan is worth every cent.",
        "Best provider I've had, the {internet} is {faster} than ever.",
    ),
}
SLOTS = {
    "cancel": ("cancel", "terminate", "close", "end", "stop"),
    "leaving": ("leaving", "switching providers", "done with you", "moving on", "thinking of leaving"),
    "expensive": ("too expensive", "overpriced", "too much money", "not worth it"),
    "charged": ("charged", "billed", "debited"),
    "bill": ("bill", "invoice", "statement", "account balance"),
    "charge": ("charge", "fee", "line item", "payment"),
    "internet": ("internet", "wifi", "connection", "broadband", "network"),
    "broken": ("not working", "broken", "dead", "acting up", "failing"),
    "slow": ("slow", "very slow", "painfully slow", "unusable"),
    "upgrade": ("upgrade", "move up", "switch", "change"),
    "faster": ("faster", "quicker", "bigger", "better"),
    "great": ("great", "excellent", "amazing", "fantastic", "awesome", "super"),
    "plan": ("Basic", "Plus", "Premium", "Family", "Unlimited 5G", "Fiber 500", "Fiber 1 Gig", "Business Pro"),
    "product": ("router", "modem", "mobile app", "TV box", "home phone", "mesh wifi", "SIM card", "streaming add-on"),
    "competitor": ("Telco Max", "NetWave", "Skyline Mobile", "Orbit Fiber", "another provider"),
    "agent": ("Maria", "James", "Priya", "Tom", "Aisha", "Your agent", "The rep"),
    "minutes": ("minutes", "seconds", "hours"),
    "month": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October"),
}
GREETINGS = ("Hi,", "Hello,", "Hey there.", "Good morning,", "Dear support,", "Hi team,", "Hello support team.")
CLOSINGS = ("Thanks.", "Thank you!", "Regards, {agent_name}", "Cheers", "Please advise.", "Thx", "Best, {agent_name}")
NAMES = ("Alex", "Sam", "Chris", "Dana", "Lee", "Jordan", "Pat", "Robin")
ASIDE_LEADS = ("Also, ", "By the way, ", "Oh and ", "PS: ", "")
SLOT = re.compile(r"\{(\w+)\}")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _fill(rng: np.random.Generator, template: str) -> str:
    """Replace every {slot}: synonyms and names from SLOTS, numbers, amounts and dates drawn fresh."""

    def value(match: re.Match) -> str:
        slot = match.group(1)
        if slot in SLOTS:
            return _pick(rng, SLOTS[slot])
        if slot.endswith("_cap"):
            return _pick(rng, SLOTS[slot[:-4]]).capitalize()
        if slot == "plan2":
            return _pick(rng, SLOTS["plan"])
        if slot in ("amount", "amount2"):
            return f"${int(rng.integers(5, 300))}.{int(rng.integers(0, 100)):02d}"
        if slot == "date":
            month, day = _pick(rng, SLOTS["month"]), int(rng.integers(1, 29))
            numeric = f"{int(rng.integers(1, 13))}/{day}"
            return _pick(rng, (f"{month} {day}", numeric, f"the {_ordinal(day)}", "last week"))
        if slot == "agent_name":
            return _pick(rng, NAMES)
        if slot == "code":
            return str(int(rng.integers(100, 999)))
        if slot == "speed":
            return str(int(rng.integers(1, 40)))
        return str(int(rng.integers(2, 60)))  # months, hours, times, minutes_n

    return SLOT.sub(value, template)


def _typos(rng: np.random.Generator, text: str) -> str:
    """Swap a letter with the next one, drop it or double it, at TYPO_CHAR_RATE per letter."""
    chars, out, i = list(text), [], 0
    hits = rng.random(len(chars)) < TYPO_CHAR_RATE
    kinds = rng.integers(0, 3, size=len(chars))
    while i < len(chars):
        if hits[i] and chars[i].isalpha():
            if kinds[i] == 0 and i + 1 < len(chars):
                out += [chars[i + 1], chars[i]]
                i += 2
                continue
            if kinds[i] == 1:
                i += 1
                continue
            out.append(chars[i])
        out.append(chars[i])
        i += 1
    return "".join(out)


def _case(rng: np.random.Generator, text: str) -> str:
    style = rng.choice(list(CASE_STYLES), p=list(CASE_STYLES.values()))
    return {"lower": text.lower(), "upper": text.upper(), "title": text.title()}.get(str(style), text)


def _message(rng: np.random.Generator, intent: str) -> str:
    parts = [_fill(rng, _pick(rng, TEMPLATES[intent]))]
    if rng.random() < ASIDE_RATE:
        other = _pick(rng, [name for name in INTENTS if name != intent])
        aside = _fill(rng, _pick(rng, TEMPLATES[other]))
        lead = _pick(rng, ASIDE_LEADS)
        parts.append(lead + (aside[0].lower() + aside[1:] if lead else aside))
    if rng.random() < GREETING_RATE:
        parts.insert(0, _pick(rng, GREETINGS))
    if rng.random() < CLOSING_RATE:
        parts.append(_fill(rng, _pick(rng, CLOSINGS)))
    text = " ".join(parts)
    if rng.random() < TYPO_MESSAGE_RATE:
        text = _typos(rng, text)
    return _case(rng, text)


def generate_messages(n: int, seed: int, *, label_noise: float = LABEL_NOISE) -> pd.DataFrame:
    """n distinct support messages (columns text, label, source="synthetic"), intents drawn uniformly.

    The random stream does not depend on `label_noise`, so label_noise=0 gives the same texts with their
    true intents: the two differ exactly in the relabelled rows.
    """
    if n < 1:
        raise ValueError(f"synthetic messages: n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    texts: dict[str, str] = {}  # text -> label; a repeated text is drawn again, so texts are unique
    while len(texts) < n:
        intent = _pick(rng, INTENTS)
        text = _message(rng, intent)
        flip, other = rng.random(), _pick(rng, [name for name in INTENTS if name != intent])
        if text not in texts:
            texts[text] = other if flip < label_noise else intent
    return pd.DataFrame({"text": list(texts), "label": list(texts.values()), "source": "synthetic"})
