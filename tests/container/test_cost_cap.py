"""The per-run cost cap: the price from the instance file the host writes at boot and the table in
the environment, the accumulated cost kept in the checkpoint across attempts, the stop before the
cap with its own exit code, and a cap that cannot be enforced refused before anything is written."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from bert_train import cost
from bert_train.__main__ import main
from bert_train.config import BadInput
from bert_train.state import TrainState
from bert_train.train import run
from bertbatch_contract import job, pricing

from .conftest import final_metrics, stored_file, tiny_args, tiny_config

PRICES = {"g5.xlarge": {"spot": 3.6, "on_demand": 7.2}, "g5.12xlarge": {"on_demand": 20.0}}


@pytest.fixture
def instance_file(tmp_path, monkeypatch):
    """The host's instance file (job.INSTANCE_INFO_FILE) under tmp_path: a g5.xlarge Spot instance."""
    path = tmp_path / "etc" / "instance.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"instance_type": "g5.xlarge", "life_cycle": "spot"}))
    monkeypatch.setattr(cost, "INSTANCE_FILE", path)
    return path


@pytest.fixture
def fake_clock(monkeypatch):
    """The meter's clock, moved only by the test: [seconds]. The process is 120 s old at start."""
    now = [0.0]
    monkeypatch.setattr(cost, "clock", lambda: now[0])
    monkeypatch.setattr(cost, "process_age_seconds", lambda: 120.0)
    return now


def capped_env(monkeypatch, cap: str, prices: str = json.dumps(PRICES), nodes: str | None = None) -> None:
    monkeypatch.setenv(job.ENV_MAX_COST_USD, cap)
    monkeypatch.setenv(job.ENV_PRICES, prices)
    if nodes is None:
        monkeypatch.delenv(job.ENV_BATCH_NUM_NODES, raising=False)
    else:
        monkeypatch.setenv(job.ENV_BATCH_NUM_NODES, nodes)


# --- the arithmetic -------------------------------------------------------------------------------


def test_cost_is_price_times_hours_times_nodes():
    assert cost.cost_usd(0.45, 3600) == pytest.approx(0.45)
    assert cost.cost_usd(1.006, 1800, nodes=2) == pytest.approx(1.006)  # half an hour on two nodes
    assert cost.cost_usd(32.77, 90 * 60, nodes=4) == pytest.approx(196.62)  # 1.5 h x 4 x 32.77
    assert cost.Rate("g5.xlarge", "spot", 3.6, nodes=3).usd_per_second == pytest.approx(0.003)


def test_meter_stops_when_one_more_step_and_a_checkpoint_would_reach_the_cap(fake_clock):
    # $0.001/s; billing began 120 s before the meter was made (the process's start-up)
    meter = cost.CostMeter(1.0, cost.Rate("g5.xlarge", "spot", 3.6, nodes=1), started=-120.0)
    state = TrainState()
    # start: $0.12 spent + a 30 s checkpoint ($0.03) < $1
    assert not meter.must_stop(state)
    stops = []
    for step in range(1, 20):
        fake_clock[0] += 60.0  # one step: $0.06
        state.step = step
        stops.append(meter.must_stop(state, checkpoint_seconds=[5.0]))
    # after step k: 0.12 + 0.06 k spent, reserve (60 s step + 30 s checkpoint) $0.09 -> stop at k = 14
    assert stops.index(True) + 1 == 14
    assert meter.spent(state) == pytest.approx(0.12 + 0.06 * 19)
    meter.record(state)
    assert state.cost_usd == pytest.approx(0.12 + 0.06 * 19)
    # a checkpoint seen to take longer than the default widens the reserve
    slow = cost.CostMeter(1.0, cost.Rate("g5.xlarge", "spot", 3.6, nodes=1), started=fake_clock[0])
    assert slow.must_stop(TrainState(cost_usd=0.5), checkpoint_seconds=[500.0])  # 0.5 + 0.5 >= 1
    assert not slow.must_stop(TrainState(cost_usd=0.5), checkpoint_seconds=[400.0])


def test_no_cap_means_no_meter_even_without_the_instance_file(instance_file):
    instance_file.unlink()  # a local run: no host wrote it
    meter = cost.meter_from_env({job.ENV_PRICES: json.dumps(PRICES)})
    assert not meter.enabled and not meter.must_stop(TrainState())
    state = TrainState(cost_usd=1.5)
    meter.record(state)
    assert state.cost_usd == 1.5


def test_the_price_is_this_instances_from_the_instance_file(instance_file):
    instance_file.write_text(json.dumps({"instance_type": "g5.xlarge", "life_cycle": "on-demand"}))
    meter = cost.meter_from_env({job.ENV_MAX_COST_USD: "5", job.ENV_PRICES: json.dumps(PRICES),
                                 job.ENV_BATCH_NUM_NODES: "2"})
    assert meter.rate == cost.Rate("g5.xlarge", "on-demand", 7.2, nodes=2) and meter.cap_usd == 5.0


def test_the_instance_file_is_the_one_the_platform_mounts():
    assert str(cost.INSTANCE_FILE) == job.INSTANCE_INFO_FILE
    assert job.INSTANCE_INFO_FILE.startswith(job.INSTANCE_INFO_DIR + "/")


# --- the price table contract ---------------------------------------------------------------------


def test_price_table_round_trip_and_one_line_errors():
    text = pricing.dumps(PRICES)
    assert pricing.parse(text) == PRICES
    assert pricing.hourly_price(PRICES, "g5.12xlarge", "spot") is None
    assert pricing.hourly_price(PRICES, "g5.12xlarge", "on-demand") == 20.0
    assert pricing.hourly_price(PRICES, "g5.xlarge", "capacity-block") is None
    assert pricing.parse_cap(pricing.format_cap(12.5)) == 12.5
    for bad, message in [
        ("{", "$BERT_BATCH_PRICES: invalid JSON (Expecting property name enclosed in double quotes at column 2)"),
        ("[]", "$BERT_BATCH_PRICES: must be a non-empty JSON object of instance type -> prices"),
        ('{"G5 XL": {"spot": 1}}', "$BERT_BATCH_PRICES: 'G5 XL' is not an EC2 instance type (e.g. 'g5.xlarge')"),
        ('{"g5.xlarge": {"on-demand": 1}}', "$BERT_BATCH_PRICES: g5.xlarge: unknown key 'on-demand' (use 'spot' or "
                                            "'on_demand')"),
        ('{"g5.xlarge": {"spot": -1}}', "$BERT_BATCH_PRICES: g5.xlarge.spot: -1 is not a price (a number of US "
                                        "dollars per hour > 0)"),
        ('{"g5.xlarge": {"spot": true}}', "$BERT_BATCH_PRICES: g5.xlarge.spot: True is not a price (a number of US "
                                          "dollars per hour > 0)"),
    ]:
        with pytest.raises(pricing.PricingError) as err:
            pricing.parse(bad)
        assert str(err.value) == message
    for cap in ("0", "-3", "nan", "inf", "ten"):
        with pytest.raises(pricing.PricingError, match="must be a number of US dollars > 0"):
            pricing.parse_cap(cap)


# --- runs -----------------------------------------------------------------------------------------


def test_cap_stops_with_a_checkpoint_and_a_higher_cap_resumes(small_data, tmp_path, instance_file, fake_clock,
                                                              monkeypatch,
                                                              caplog):
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"

    def one_minute_per_step(step: int) -> None:
        fake_clock[0] += 60.0

    # two g5.xlarge Spot nodes: $0.002/s; start-up 120 s = $0.24; each step $0.12; reserve 90 s = $0.18
    capped_env(monkeypatch, "2.00", nodes="2")
    with caplog.at_level(logging.INFO, "bert_train"):
        first = run(tiny_config(*small_data, out, ckpt), on_step=one_minute_per_step)
    # stop after step k, the first with 0.24 + 0.12 k + 0.18 >= 2.00: k = 14, $1.92 spent
    assert first.exit_code == job.EXIT_COST_CAP and first.interrupted
    assert first.global_step == 14 and first.cost_usd == pytest.approx(1.92)
    assert "cost cap reached: $1.92 of $2.00 after step 14" in caplog.text
    saved = torch.load(stored_file(ckpt, 14, "trainer_state.pt"), weights_only=True)
    assert saved["state"]["cost_usd"] == pytest.approx(1.92)
    assert not (out / "metrics.json").exists()

    # a new attempt with a higher cap: resumes with the run's cost and adds its own
    fake_clock[0] = 0.0
    capped_env(monkeypatch, "10", nodes="2")
    second = run(tiny_config(*small_data, out, ckpt), on_step=one_minute_per_step)
    assert second.exit_code == 0 and second.resumed_from_step == 14 and second.global_step == 60
    assert second.cost_usd == pytest.approx(1.92 + 0.24 + 46 * 0.12)  # both attempts, start-ups included

    # the stop changed nothing in the training: same numbers as a run without a cap
    monkeypatch.delenv(job.ENV_MAX_COST_USD)
    reference = run(tiny_config(*small_data, tmp_path / "ref-out", tmp_path / "ref-ckpt"))
    assert reference.cost_usd == 0.0
    resumed, uninterrupted = final_metrics(out), final_metrics(tmp_path / "ref-out")
    for key in ("global_step", "eval_accuracy", "eval_f1", "eval_loss", "train_loss", "history"):
        assert resumed[key] == uninterrupted[key], key


def test_no_cap_runs_without_the_instance_file(small_data, tmp_path, instance_file, monkeypatch):
    instance_file.unlink()
    monkeypatch.delenv(job.ENV_MAX_COST_USD, raising=False)
    monkeypatch.setenv(job.ENV_PRICES, json.dumps(PRICES))
    result = run(tiny_config(*small_data, tmp_path / "out", tmp_path / "ckpt", max_steps=3))
    assert result.exit_code == 0 and result.cost_usd == 0.0


def test_a_cap_already_reached_stops_before_the_first_step(small_data, tmp_path, instance_file, monkeypatch, capsys,
                                                           caplog):
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    capped_env(monkeypatch, "1", prices=json.dumps({"g5.xlarge": {"spot": 3_600_000.0}}))  # $1000 a second
    with caplog.at_level(logging.WARNING, "bert_train"):
        code = main(tiny_args(*small_data, out, ckpt))
    assert code == job.EXIT_COST_CAP
    assert "of $1.00 after step 0" in caplog.text
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize("setting, message", [
    ({"prices": json.dumps({"g5.2xlarge": {"spot": 0.5}})},
     "cost cap $2.00: $BERT_BATCH_PRICES has no spot price for g5.xlarge (it prices g5.2xlarge)"),
    ({"prices": '{"g5.xlarge": {"spot": "cheap"}}'},
     "$BERT_BATCH_PRICES: g5.xlarge.spot: 'cheap' is not a price (a number of US dollars per hour > 0)"),
    ({"prices": "g5.xlarge=0.45"}, "$BERT_BATCH_PRICES: invalid JSON (Expecting value at column 1)"),
    ({"prices": ""}, "$BERT_BATCH_MAX_COST_USD is set but $BERT_BATCH_PRICES is not"),
    ({"cap": "-5"}, "$BERT_BATCH_MAX_COST_USD '-5': must be a number of US dollars > 0"),
    ({"instance": None}, "cost cap $2.00: cannot learn this instance's type and purchase option from the "
                         "instance metadata service: cannot read {path} (file not found: the host writes it at boot; "
                         "a local run has none)"),
    ({"instance": "{"}, "cannot learn this instance's type and purchase option from the instance metadata service: "
                        "cannot read {path} (not JSON: Expecting property name enclosed in double quotes at column 2)"),
    ({"instance": '["g5.xlarge", "spot"]'}, "cannot read {path} (not a JSON object with instance_type and "
                                             "life_cycle)"),
    ({"instance": '{"instance_type": "g5.xlarge"}'}, "cannot read {path} (no life_cycle)"),
    ({"instance": '{"instance_type": "", "life_cycle": "spot"}'}, "cannot read {path} (instance_type '' is not a "
                                                                  "non-empty string)"),
    ({"instance": '{"instance_type": "g5.xlarge", "life_cycle": 1}'}, "cannot read {path} (life_cycle 1 is not a "
                                                                      "non-empty string)"),
])
def test_a_cap_that_cannot_be_enforced_refuses_to_start(small_data, tmp_path, instance_file, monkeypatch, capsys,
                                                         setting, message):
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    capped_env(monkeypatch, setting.get("cap", "2.00"), prices=setting.get("prices", json.dumps(PRICES)))
    if "instance" in setting:
        instance_file.unlink()
        if setting["instance"] is not None:
            instance_file.write_text(setting["instance"])
    message = message.format(path=instance_file)
    code = main(tiny_args(*small_data, out, ckpt))
    err = capsys.readouterr().err
    assert code == job.EXIT_BAD_INPUT
    assert len(err.splitlines()) == 1 and err.startswith("bert_train: error: ") and message in err, err
    assert not out.exists() and not ckpt.exists()


def test_bad_node_count_is_bad_input(instance_file):
    with pytest.raises(BadInput, match=r"\$AWS_BATCH_JOB_NUM_NODES '0': must be an integer >= 1"):
        cost.meter_from_env({job.ENV_MAX_COST_USD: "1", job.ENV_PRICES: json.dumps(PRICES),
                             job.ENV_BATCH_NUM_NODES: "0"})
