"""Refresh the price table (bertbatch/data/prices.json) from AWS: On-Demand list prices from the
Price List API, Spot prices from the current Spot price history (the median over the region's
Availability Zones, a typical value rather than a quote).

Every instance type already in the table is refreshed; the table's other fields are kept, and
`as_of` and `region` say when and where the prices were read. Needs AWS credentials allowed
`pricing:GetProducts` and `ec2:DescribeSpotPriceHistory`.

    python -m bertbatch.cost.price_refresh --output bertbatch/data/prices.json
    python -m bertbatch.cost.price_refresh --region eu-west-1 --output prices-eu-west-1.json
    bertbatch estimate --rows 2000000 --prices prices-eu-west-1.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..core import aws_clients as aws
from ..core.errors import BertBatchError
from .training_cost import load_table

# The Price List API answers from these endpoints only; us-east-1 serves every region's prices.
PRICE_LIST_REGION = "us-east-1"
# A Linux instance on shared tenancy with no pre-installed software: what Batch launches.
_LINUX_SHARED = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                 "capacitystatus": "Used", "licenseModel": "No License required"}
TABLES = ("instances", "cpu_instances")


def on_demand_price(pricing: Any, region: str, instance_type: str) -> float:
    """The hourly On-Demand USD price of a Linux `instance_type` in `region`."""
    filters = {**_LINUX_SHARED, "regionCode": region, "instanceType": instance_type}
    answer = pricing.get_products(
        ServiceCode="AmazonEC2",
        Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
    )
    prices = set()
    for item in answer.get("PriceList", []):
        for term in json.loads(item).get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = float(dimension.get("pricePerUnit", {}).get("USD", 0))
                if usd > 0:
                    prices.add(usd)
    if len(prices) != 1:
        found = "no" if not prices else f"{len(prices)} different"
        raise BertBatchError(f"{instance_type}: {found} On-Demand Linux prices in {region} in the Price List")
    return prices.pop()


def spot_prices(ec2: Any, instance_types: list[str]) -> dict[str, float]:
    """The median current Spot price of each type over the region's zones (types with no Spot
    offer are left out)."""
    by_type: dict[str, dict[str, float]] = {}
    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=instance_types, ProductDescriptions=["Linux/UNIX"],
        StartTime=datetime.datetime.now(datetime.UTC),
    )
    for page in pages:
        for row in page["SpotPriceHistory"]:
            # The newest price of each zone comes first; keep it.
            by_type.setdefault(row["InstanceType"], {}).setdefault(row["AvailabilityZone"], float(row["SpotPrice"]))
    return {t: round(statistics.median(zones.values()), 4) for t, zones in by_type.items()}


def refreshed(table: dict[str, Any], *, region: str, pricing: Any, ec2: Any, today: datetime.date) -> dict[str, Any]:
    """`table` with every instance type's prices read anew."""
    out = json.loads(json.dumps(table))
    types = [t for name in TABLES for t in out.get(name, {})]
    spot = spot_prices(ec2, types)
    for name in TABLES:
        for instance_type, row in out.get(name, {}).items():
            row["on_demand"] = on_demand_price(pricing, region, instance_type)
            if instance_type in spot:
                row["spot"] = spot[instance_type]
            else:
                row.pop("spot", None)
    out["region"], out["as_of"] = region, today.isoformat()
    return out


def write_atomically(path: Path, table: dict[str, Any]) -> None:
    """The whole new table or the old one: never half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(table, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bertbatch.cost.price_refresh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--region", default=PRICE_LIST_REGION, help="the region whose prices to read")
    parser.add_argument("--aws-profile", help="the AWS profile to use")
    parser.add_argument("--output", type=Path, help="where to write the table (default: standard output)")
    args = parser.parse_args(argv)
    try:
        with aws.aws_errors():
            table = refreshed(
                load_table("prices.json"), region=args.region, today=datetime.date.today(),
                pricing=aws.make_client("pricing", region=PRICE_LIST_REGION, aws_profile=args.aws_profile),
                ec2=aws.make_client("ec2", region=args.region, aws_profile=args.aws_profile),
            )
    except BertBatchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if args.output:
        write_atomically(args.output, table)
    else:
        print(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
