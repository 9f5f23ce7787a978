"""Several deployments behind one gateway (fake instances): routing by the ``model``
field, 404 for an unknown model, every deployment listed in /v1/models, /state and
/metrics, and a memory budget that evicts an idle deployment for another."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from gateway_fixtures import GatewayFactory, RunningGateway

from scalezero.errors import UserError
from scalezero.serving.app import BudgetConfig, DeploymentConfig
from scalezero.serving.cli import read_deployments
from scalezero.serving.settings import DeploymentSettings, GatewaySettings
from scalezero.serving.strategies import make_policy

NAMES = ("fake", "beta", "gamma")


def three_deployments(make_gateway: GatewayFactory, budget_mib: float | None = None,
                      wait_s: float = 5.0) -> RunningGateway:
    gw = make_gateway("keep_warm", start=False)
    base = gw.config
    extra = tuple(
        DeploymentConfig(name, dataclasses.replace(base.spec, model_alias=name),
                         make_policy("keep_warm", {"keep_warm_ttl_s": 600.0}))
        for name in NAMES[1:]
    )
    budget = None if budget_mib is None else BudgetConfig(
        budget_mib=budget_mib, eviction="lru", wait_s=wait_s, device="cpu",
        estimates_mib={name: 100.0 for name in NAMES})
    config = dataclasses.replace(
        base, policy=make_policy("keep_warm", {"keep_warm_ttl_s": 600.0}), extra=extra,
        budget=budget)
    make_gateway.started.remove(gw)
    gw.client.close()
    gw._sock.close()
    running = make_gateway.from_config(config)
    if running.gateway.budget is not None:
        # The fake instances' measured memory would replace the estimates set here.
        running.gateway.budget._meter = None
    return running


def complete(gw: RunningGateway, model: str | None) -> tuple[int, dict[str, object], str]:
    body: dict[str, object] = {"prompt": "hi", "max_tokens": 2}
    if model is not None:
        body["model"] = model
    response = gw.client.post("/v1/completions", json=body)
    return (response.status_code, response.json(),
            response.headers.get("x-scalezero-deployment", ""))


def test_requests_route_by_model_and_unknown_models_are_404(
        make_gateway: GatewayFactory) -> None:
    gw = three_deployments(make_gateway)
    for name in NAMES:
        status, body, deployment = complete(gw, name)
        assert status == 200 and deployment == name
        assert body["model"] == name
    status, _, deployment = complete(gw, None)
    assert status == 200 and deployment == "fake"  # unset: the first deployment
    status, body, _ = complete(gw, "nope")
    assert status == 404
    assert body == {"error": {
        "message": "The model `nope` does not exist (available: fake, beta, gamma)",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}
    models = gw.client.get("/v1/models").json()
    assert [card["id"] for card in models["data"]] == list(NAMES)
    state = gw.client.get("/state").json()
    assert list(state["deployments"]) == list(NAMES)
    assert state["memory"] is None
    metrics = gw.client.get("/metrics").text
    for name in NAMES:
        assert f'scalezero_in_flight{{deployment="{name}"}}' in metrics
        assert f'scalezero_cold_starts_total{{deployment="{name}"}} 1.0' in metrics


def test_a_budget_for_two_evicts_the_least_recently_used(make_gateway: GatewayFactory) -> None:
    gw = three_deployments(make_gateway, budget_mib=250.0)
    for name in NAMES:
        status, _, deployment = complete(gw, name)
        assert status == 200 and deployment == name
    state = gw.client.get("/state").json()
    assert state["memory"]["evictions"] == 1
    assert state["memory"]["budget_mib"] == 250.0
    gw.wait_for(lambda: gw.client.get("/state").json()["deployments"]["fake"]["instances"]
                == [], what="the evicted instance to stop")
    drains = [e for e in gw.events if e.event == "drain"]
    assert [(e.instance_id, e.reason) for e in drains] == [("fake-i1", "evicted")]
    metrics = gw.client.get("/metrics").text
    assert 'scalezero_evictions_total{deployment="fake"} 1.0' in metrics
    assert 'scalezero_evictions_total{deployment="beta"} 0.0' in metrics
    assert 'scalezero_wakes_total{deployment="fake"} 0.0' in metrics
    assert 'scalezero_instances{deployment="fake",state="sleeping"} 0.0' in metrics
    deployment = state["deployments"]["fake"]
    assert (deployment["sleeping"], deployment["waking"], deployment["wakes"]) == (0, 0, 0)


def test_no_memory_within_the_wait_is_503_with_the_reason(
        make_gateway: GatewayFactory) -> None:
    gw = three_deployments(make_gateway, budget_mib=150.0, wait_s=0.3)
    assert complete(gw, "fake")[0] == 200
    pool = gw.gateway.pools["fake"]
    lease_holder = gw.gateway.pools["fake"].instances[0]
    lease_holder.in_flight += 1  # a request in flight, as far as the budget can tell
    try:
        status, body, _ = complete(gw, "beta")
    finally:
        lease_holder.in_flight -= 1
    assert status == 503
    error = body["error"]
    assert isinstance(error, dict)
    assert error["type"] == "insufficient_memory"
    assert "no memory for 'beta'" in str(error["message"])
    assert pool.evictions == 0


# ---------------------------------------------------------------- settings, file


def test_the_deployments_file_makes_one_settings(tmp_path: Path, fake_model: Path) -> None:
    (tmp_path / "models").mkdir()
    other = tmp_path / "models" / "other.gguf"
    other.write_bytes(fake_model.read_bytes())
    path = tmp_path / "deployments.yaml"
    path.write_text(
        "memory_budget_mib: 900\n"
        "eviction: cost_aware\n"
        "deployments:\n"
        f"  first: {{model: {fake_model}, policy: keep_warm, keep_warm_ttl_s: 5}}\n"
        "  second: {model: models/other.gguf, policy: naive, instance: {n_ctx: 128}}\n",
        encoding="utf-8")
    data = read_deployments(path)
    settings = GatewaySettings.model_validate(data)
    assert settings.model_alias == "first" and settings.policy == "keep_warm"
    assert settings.policy_params == {"keep_warm_ttl_s": 5}
    assert settings.memory_budget_mib == 900 and settings.eviction == "cost_aware"
    assert list(settings.deployments) == ["second"]
    second = settings.deployments["second"]
    assert second.model_path == other and second.instance is not None
    config = settings.gateway_config()
    assert [d.name for d in config.extra] == ["second"]
    assert config.extra[0].spec.n_ctx == 128 and config.extra[0].spec.model_alias == "second"
    assert config.budget is not None and set(config.budget.estimates_mib) == {"first", "second"}


def test_a_bad_deployments_file_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("deployments: {x: {policy: naive}}\n", encoding="utf-8")
    with pytest.raises(UserError, match="needs 'model' and 'policy'"):
        read_deployments(path)
    path.write_text("deployments: {}\n", encoding="utf-8")
    with pytest.raises(UserError, match="no 'deployments'"):
        read_deployments(path)


def test_a_name_used_twice_is_refused(fake_model: Path) -> None:
    settings = GatewaySettings(
        model_path=fake_model, model_name="same", policy="naive",
        deployments={"same": DeploymentSettings(model_path=fake_model, policy="naive")})
    with pytest.raises(ValueError, match="used twice"):
        settings.gateway_config()


def test_serve_takes_a_deployments_file_and_budget_flags(
        tmp_path: Path, real_model: Path) -> None:
    from scalezero.cli import build_parser
    from scalezero.serving.cli import build_config

    path = tmp_path / "deployments.yaml"
    path.write_text(
        "deployments:\n"
        f"  alpha: {{model: {real_model}, policy: keep_warm}}\n"
        f"  beta: {{model: {real_model}, policy: naive, instance: {{n_ctx: 64}}}}\n",
        encoding="utf-8")
    args = build_parser(only="serve").parse_args([
        "serve", "--deployments", str(path), "--memory-budget-mib", "700",
        "--eviction", "longest_idle", "--n-ctx", "128", "--instance-command", "true"])
    config = build_config(args)
    assert config.deployment == "alpha" and config.spec.n_ctx == 128
    assert [(d.name, d.spec.n_ctx) for d in config.extra] == [("beta", 64)]
    # The keys a deployment sets go over the gateway's instance settings.
    assert config.extra[0].spec.command == config.spec.command == ("true",)
    assert config.extra[0].vocab_size == config.vocab_size  # read from the file
    assert config.budget is not None
    assert config.budget.budget_mib == 700 and config.budget.eviction == "longest_idle"
    # File size plus the KV cache of each deployment's own context.
    assert config.budget.estimates_mib["alpha"] > config.budget.estimates_mib["beta"]
    single = build_config(build_parser(only="serve").parse_args([
        "serve", "--model", str(real_model), "--strategy", "naive",
        "--instance-command", "true"]))
    assert single.extra == () and single.budget is None
