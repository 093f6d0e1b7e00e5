"""The name of a rule of the rules document (alert rules, inspection entries, detect rules):
it goes into alert ids and Redis keys, so one short, safe alphabet for all three."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def check_rule_name(value: str) -> str:
    if not RULE_NAME.match(value):
        raise ValueError("rule name must be 1-64 of a-z 0-9 _ - and start alphanumeric")
    return value


RuleName = Annotated[str, AfterValidator(check_rule_name)]
