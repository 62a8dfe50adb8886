"""Cost guardrail: disable the project's job queues when the budget's 100% ACTUAL alert arrives.

The function is subscribed to the budget topic, which only AWS Budgets may publish to. It acts
only on a record that came from that topic (the SNS record's TopicArn: text that merely reads
like a budget notification proves nothing) carrying an AWS Budgets notification for THIS
profile's budget, of alert type ACTUAL, whose threshold is at least `MIN_PERCENT` (100) percent
of the budget limit. Everything else is logged and ignored.

Disabling a queue stops new jobs from starting; jobs already running finish. Re-enable with
`aws batch update-job-queue --job-queue <name> --state ENABLED` (see docs/runbook.md).

Environment (set by platform_constructs/guardrail.py):
  BUDGET_NAME       the budget whose alert counts
  BUDGET_TOPIC_ARN  the topic the budget publishes to: records from any other topic are ignored
  BUDGET_LIMIT_USD  the budget's monthly limit, to turn a dollar threshold into a percent
  JOB_QUEUES        JSON list of the queues to disable (names or ARNs)
  MIN_PERCENT       optional, default 100

Standard library and boto3 only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

ENV_BUDGET_NAME = "BUDGET_NAME"
ENV_BUDGET_LIMIT_USD = "BUDGET_LIMIT_USD"
ENV_BUDGET_TOPIC_ARN = "BUDGET_TOPIC_ARN"
ENV_JOB_QUEUES = "JOB_QUEUES"
ENV_MIN_PERCENT = "MIN_PERCENT"
ACTUAL = "ACTUAL"
DEFAULT_MIN_PERCENT = 100.0
# Rounding slack: "$500.00" against a 500 USD limit must count as 100%.
_EPSILON = 1e-6

# "Budget Name: bert-batch-dev" style lines of the plain-text budget notification.
_FIELD = re.compile(r"^[ \t]*([A-Za-z][A-Za-z ]*?)[ \t]*:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")

# JSON-shaped budget messages (other formats, tests): accepted key spellings, lower-cased.
_JSON_KEYS = {
    "budget name": ("budgetname", "budget_name", "budget name"),
    "alert type": ("alerttype", "alert_type", "alert type", "notificationtype", "notification_type"),
    "alert threshold": ("alertthreshold", "alert_threshold", "alert threshold", "threshold"),
    "threshold type": ("thresholdtype", "threshold_type"),
}


@dataclass(frozen=True)
class BudgetAlert:
    budget_name: str
    alert_type: str  # ACTUAL | FORECASTED
    threshold_text: str  # as shown: "> $500.00", "> 100.00%", "100"
    threshold_type: str = ""  # PERCENTAGE | ABSOLUTE_VALUE when the message says so

    def threshold_percent(self, limit_usd: float) -> float | None:
        """The threshold as a percent of `limit_usd`; None when it cannot be read."""
        match = _NUMBER.search(self.threshold_text)
        if not match:
            return None
        value = float(match.group(0).replace(",", ""))
        text = self.threshold_text
        if "%" in text or self.threshold_type.upper() == "PERCENTAGE":
            return value
        if "$" in text or "USD" in text.upper() or self.threshold_type.upper() == "ABSOLUTE_VALUE":
            return value / limit_usd * 100.0 if limit_usd > 0 else None
        # A bare number: budget notifications use percentages unless they say otherwise.
        return value


def parse_budget_message(message: str) -> BudgetAlert | None:
    """Read an AWS Budgets notification (plain text, or JSON); None if it is not one."""
    fields: dict[str, str] = {}
    try:
        data = json.loads(message)
    except (TypeError, ValueError):
        data = None
    if isinstance(data, Mapping):
        lowered = {str(k).lower(): v for k, v in data.items()}
        for field, spellings in _JSON_KEYS.items():
            for key in spellings:
                if key in lowered and lowered[key] is not None:
                    fields[field] = str(lowered[key])
                    break
    elif isinstance(message, str):
        for key, value in _FIELD.findall(message):
            fields.setdefault(key.strip().lower(), value)
    name = fields.get("budget name", "").strip()
    alert_type = fields.get("alert type", "").strip().upper()
    threshold = fields.get("alert threshold", "").strip()
    if not (name and alert_type and threshold):
        return None
    return BudgetAlert(
        budget_name=name,
        alert_type=alert_type,
        threshold_text=threshold,
        threshold_type=fields.get("threshold type", "").strip(),
    )


@dataclass(frozen=True)
class Settings:
    budget_name: str
    limit_usd: float
    queues: tuple[str, ...]
    budget_topic_arn: str
    min_percent: float = DEFAULT_MIN_PERCENT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        queues = json.loads(env[ENV_JOB_QUEUES])
        if not isinstance(queues, list) or not all(isinstance(q, str) and q for q in queues):
            raise ValueError(f"{ENV_JOB_QUEUES} must be a JSON list of queue names or ARNs")
        return cls(
            budget_name=env[ENV_BUDGET_NAME],
            limit_usd=float(env[ENV_BUDGET_LIMIT_USD]),
            queues=tuple(queues),
            budget_topic_arn=env[ENV_BUDGET_TOPIC_ARN],
            min_percent=float(env.get(ENV_MIN_PERCENT) or DEFAULT_MIN_PERCENT),
        )


def decide(alert: BudgetAlert | None, settings: Settings, *, topic_arn: str | None) -> tuple[bool, str]:
    """(act?, why) for one parsed message that arrived from `topic_arn`."""
    if topic_arn != settings.budget_topic_arn:
        return False, f"message from topic {topic_arn!r}, not the budget topic {settings.budget_topic_arn!r}"
    if alert is None:
        return False, "not a budget notification"
    if alert.budget_name != settings.budget_name:
        return False, f"budget {alert.budget_name!r} is not {settings.budget_name!r}"
    if alert.alert_type != ACTUAL:
        return False, f"alert type {alert.alert_type} is not {ACTUAL}"
    percent = alert.threshold_percent(settings.limit_usd)
    if percent is None:
        return False, f"unreadable threshold {alert.threshold_text!r}"
    if percent + _EPSILON < settings.min_percent:
        return False, f"threshold {percent:.2f}% is below {settings.min_percent:g}%"
    return True, f"ACTUAL spend passed {percent:.2f}% of {settings.limit_usd:g} USD"


def disable_queues(batch: Any, queues: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """Disable each queue; (disabled, {queue: error}). Already-disabled queues are fine."""
    disabled, errors = [], {}
    for queue in queues:
        try:
            batch.update_job_queue(jobQueue=queue, state="DISABLED")
            disabled.append(queue)
        except Exception as exc:  # noqa: BLE001 - report every queue, then fail the invocation
            errors[queue] = f"{type(exc).__name__}: {exc}"
    return disabled, errors


def _log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str, sort_keys=True))


def handle(event: Mapping[str, Any], *, batch: Any, settings: Settings) -> dict:
    """Process one Lambda event (SNS records). Raises if a queue could not be disabled."""
    results = []
    failures: dict[str, str] = {}
    for record in event.get("Records") or []:
        sns = record.get("Sns") or {}
        message = sns.get("Message") or ""
        alert = parse_budget_message(message)
        act, why = decide(alert, settings, topic_arn=sns.get("TopicArn"))
        result: dict[str, Any] = {
            "message_id": sns.get("MessageId"),
            "action": "disable-queues" if act else "ignore",
            "reason": why,
            "alert": asdict(alert) if alert else None,
        }
        if act:
            disabled, errors = disable_queues(batch, settings.queues)
            result.update(disabled=disabled, errors=errors)
            failures.update(errors)
            _log("guardrail-fired", **result)
        else:
            _log("guardrail-ignored", **result)
        results.append(result)
    if failures:
        raise RuntimeError(f"could not disable {len(failures)} queue(s): {failures}")
    return {"results": results}


def make_client(service: str) -> Any:
    # Imported here, not at the top: the stack imports this module at synth for its variable
    # names, and synth does not install boto3 (the Lambda runtime provides it).
    import boto3

    return boto3.client(service)


def handler(event: Mapping[str, Any], context: Any = None) -> dict:
    settings = Settings.from_env(os.environ)
    return handle(event, batch=make_client("batch"), settings=settings)
