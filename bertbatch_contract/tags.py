"""Job tags: set by the CLI at submit and by the fallback function when it resubmits."""

from __future__ import annotations

TAG_RUN_ID = "bert-batch:run-id"
# The team a job runs for (also its fair-share identifier, bertbatch_contract.teams); copied to a fallback job.
TAG_TEAM = "bert-batch:team"
TAG_FALLBACK_FROM = "bert-batch:fallback-from"  # on the On-Demand job: the Spot job it replaces
TAG_FALLBACK_TO = "bert-batch:fallback-to"  # on the Spot job: the On-Demand job that replaced it
# On every job `bertbatch submit` makes: its cost estimate for the whole run in USD, as a decimal
# string ("3.42"), so `status` can show it next to the ledger's actual cost. Copied to a fallback job.
TAG_COST_ESTIMATE = "bert-batch:cost-estimate-usd"
