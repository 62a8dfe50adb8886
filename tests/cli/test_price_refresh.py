"""Refreshing the price table from the Price List API and the Spot price history (Stubber)."""

from __future__ import annotations

import datetime
import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from bertbatch.core.errors import BertBatchError
from bertbatch.cost import price_refresh

TABLE = {
    "region": "us-east-1", "as_of": "2026-01-01", "note": "kept",
    "instances": {"g5.xlarge": {"gpu": "A10G", "gpus": 1, "on_demand": 1.0, "spot": 0.4}},
    "cpu_instances": {"c7i.xlarge": {"vcpus": 4, "on_demand": 0.1, "spot": 0.05}},
}


def product(usd: str) -> str:
    dimension = {"unit": "Hrs", "pricePerUnit": {"USD": usd}}
    return json.dumps({"terms": {"OnDemand": {"T1": {"priceDimensions": {"D1": dimension}}}}})


def spot(instance_type: str, zone: str, price: str) -> dict:
    return {"InstanceType": instance_type, "AvailabilityZone": zone, "SpotPrice": price,
            "ProductDescription": "Linux/UNIX", "Timestamp": datetime.datetime(2026, 12, 1)}


def clients(region: str):
    pricing = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    ec2 = boto3.client("ec2", region_name=region, aws_access_key_id="x", aws_secret_access_key="x")
    return pricing, ec2, Stubber(pricing), Stubber(ec2)


def expect_price(stub: Stubber, region: str, instance_type: str, *usd: str) -> None:
    filters = {**price_refresh._LINUX_SHARED, "regionCode": region, "instanceType": instance_type}
    stub.add_response("get_products", {"PriceList": [product(u) for u in usd]}, {
        "ServiceCode": "AmazonEC2",
        "Filters": [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
    })


def test_every_type_is_priced_anew_for_the_region():
    pricing, ec2, pricing_stub, ec2_stub = clients("eu-west-1")
    ec2_stub.add_response("describe_spot_price_history", {"SpotPriceHistory": [
        spot("g5.xlarge", "eu-west-1a", "0.50"), spot("g5.xlarge", "eu-west-1a", "0.99"),  # older: ignored
        spot("g5.xlarge", "eu-west-1b", "0.60"), spot("g5.xlarge", "eu-west-1c", "0.90"),
    ]}, {"InstanceTypes": ["g5.xlarge", "c7i.xlarge"], "ProductDescriptions": ["Linux/UNIX"], "StartTime": ANY})
    expect_price(pricing_stub, "eu-west-1", "g5.xlarge", "1.123", "0.0000")  # a zero-priced SKU is no price
    expect_price(pricing_stub, "eu-west-1", "c7i.xlarge", "0.2")
    with pricing_stub, ec2_stub:
        out = price_refresh.refreshed(TABLE, region="eu-west-1", pricing=pricing, ec2=ec2,
                                      today=datetime.date(2026, 12, 6))
    assert out["instances"]["g5.xlarge"] == {"gpu": "A10G", "gpus": 1, "on_demand": 1.123, "spot": 0.6}
    # no Spot offer in the history: no Spot price, rather than a stale one
    assert out["cpu_instances"]["c7i.xlarge"] == {"vcpus": 4, "on_demand": 0.2}
    assert (out["region"], out["as_of"], out["note"]) == ("eu-west-1", "2026-12-06", "kept")
    assert TABLE["instances"]["g5.xlarge"]["on_demand"] == 1.0  # the input is left alone


@pytest.mark.parametrize("usd", [(), ("1.0", "2.0")])
def test_a_type_without_one_price_is_refused_by_name(usd):
    pricing, ec2, pricing_stub, ec2_stub = clients("us-east-1")
    ec2_stub.add_response("describe_spot_price_history", {"SpotPriceHistory": []})
    expect_price(pricing_stub, "us-east-1", "g5.xlarge", *usd)
    refused = pytest.raises(BertBatchError, match=r"^g5\.xlarge: .* On-Demand Linux prices? in us-east-1")
    with pricing_stub, ec2_stub, refused:
        price_refresh.refreshed(TABLE, region="us-east-1", pricing=pricing, ec2=ec2, today=datetime.date(2026, 12, 6))


def test_a_failed_write_leaves_the_old_table(tmp_path, monkeypatch):
    path = tmp_path / "prices.json"
    path.write_text("old")
    monkeypatch.setattr(price_refresh.json, "dump", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        price_refresh.write_atomically(path, TABLE)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["prices.json"]


def test_main_writes_the_table_or_one_line_naming_the_failure(tmp_path, monkeypatch, capsys):
    pricing, ec2, pricing_stub, ec2_stub = clients("us-east-1")
    by_service = {"pricing": pricing, "ec2": ec2}
    monkeypatch.setattr(price_refresh.aws, "make_client", lambda service, **_: by_service[service])
    monkeypatch.setattr(price_refresh, "load_table", lambda name: TABLE)
    ec2_stub.add_client_error("describe_spot_price_history", "UnauthorizedOperation", "not allowed")
    output = tmp_path / "prices.json"
    with ec2_stub:
        assert price_refresh.main(["--output", str(output)]) == 1
    assert capsys.readouterr().err == "Error: DescribeSpotPriceHistory failed: UnauthorizedOperation: not allowed\n"
    assert not output.exists()

    ec2_stub.add_response("describe_spot_price_history", {"SpotPriceHistory": []})
    expect_price(pricing_stub, "us-east-1", "g5.xlarge", "1.5")
    expect_price(pricing_stub, "us-east-1", "c7i.xlarge", "0.25")
    with pricing_stub, ec2_stub:
        assert price_refresh.main(["--output", str(output)]) == 0
    assert json.loads(output.read_text())["instances"]["g5.xlarge"]["on_demand"] == 1.5
