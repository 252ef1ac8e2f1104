"""Codes every component shares: they appear in events and in more than one service's API.

Names follow HTCDS (case facts), Open Referral HSDS (services) and the ILO where
they have one. Country-specific lists (regions, districts) are data, not code.
"""

from typing import Literal, get_args

Urgency = Literal["critical", "high", "normal", "low"]
URGENCIES: tuple[Urgency, ...] = get_args(Urgency)  # most urgent first

CaseType = Literal["presumed_trafficking_victim", "vulnerable_migrant", "labour_complaint"]

ServiceType = Literal[
    "shelter",
    "medical",
    "psychosocial",
    "legal_aid",
    "interpretation",
    "return_travel",
    "subsistence",
    "reintegration",
    "child_protection",
    "other",
]
SERVICE_TYPES: tuple[ServiceType, ...] = get_args(ServiceType)

# HTCDS gender values.
Gender = Literal["female", "male", "transgender", "other", "unknown"]

AgeBand = Literal["0-11", "12-17", "18-24", "25-34", "35-49", "50+", "unknown"]

# What a person consents to. `referral:<service type>` names each kind of help they
# agree to be referred to.
ConsentScope = str

Currency = str  # ISO 4217, upper case, e.g. "TJS"

FundPurpose = Literal["shelter", "medical", "legal", "return_travel", "subsistence", "other"]
