"""deploy/: the cluster's instance config, the Helm values, the image and the shard launcher.

The instance config goes through Dagster's own schema and classes (a real instance with its
run queue and pools, a real K8sRunLauncher building a run pod); the Helm values are checked
against that instance, key by key, and the Dockerfile against the package. No Docker engine
and no cluster are needed.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import sys
import tomllib
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pandas as pd
import pytest
import sqlalchemy
import yaml
from dagster import DagsterInstance, DagsterRun
from dagster._config import process_config
from dagster._core.instance.config import PoolGranularity, dagster_instance_config
from dagster._core.test_utils import instance_for_test
from dagster._utils.tags import TagConcurrencyLimitsCounter
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import construct_dagster_k8s_job
from dagster_postgres.utils import pg_config, pg_url_from_config

from sigmasight_pipeline.assets.common import MARKET_DATA_API_POOL, SYMBOL_TABLES_POOL
from sigmasight_pipeline.resources.database import PROJECT_ROOT
from sigmasight_pipeline.resources.instance import INSTANCE_YAML as LOCAL_INSTANCE_YAML
from sigmasight_pipeline.resources.instance import dagster_storage_url
from sigmasight_pipeline.runs import (
    MARKET_ASSETS,
    SYMBOL_ASSETS,
    BackfillPlan,
    partitioned_assets,
)
from sigmasight_pipeline.scope import SHARD_TAG, Scope

DEPLOY = PROJECT_ROOT / "deploy"
INSTANCE_YAML = DEPLOY / "dagster-instance.yaml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
LAUNCHER_SCRIPT = DEPLOY / "launch_sharded_backfill.py"

# The secret `sigmasight-env` of deploy/README.md: the database's parts for the instance. The
# password has the characters a URL must escape.
DATABASE_PARTS = {
    "DAGSTER_PG_HOST": "db.cluster.internal",
    "DAGSTER_PG_PORT": "6432",
    "DAGSTER_PG_USER": "sigmasight",
    "DAGSTER_PG_PASSWORD": "p@ss:w/rd%",
    "DAGSTER_PG_DB_NAME": "sigmasight_prod",
}
RUN_IMAGE = "registry.example.com/sigmasight-pipeline:0a1b2c3"


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def deploy_instance() -> dict[str, Any]:
    return load_yaml(INSTANCE_YAML)


@pytest.fixture(scope="module")
def helm() -> dict[str, Any]:
    return load_yaml(HELM_VALUES)


@pytest.fixture(scope="module")
def pyproject_dagster() -> dict[str, str]:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]


@pytest.fixture
def database_secret(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in DATABASE_PARTS.items():
        monkeypatch.setenv(name, value)
    return DATABASE_PARTS


@pytest.fixture(scope="module")
def cluster_instance(deploy_instance: dict[str, Any]):
    """A real DagsterInstance from deploy/dagster-instance.yaml: its run coordinator, queue
    limits, pools, run monitoring and retries, on a throwaway local storage instead of the
    cluster's PostgreSQL (checked on its own below). The K8s launcher loads lazily."""
    cluster_parts = {key: value for key, value in deploy_instance.items() if key != "storage"}
    with instance_for_test(overrides=cluster_parts) as instance:
        yield instance


def shard_run(index: int, count: int) -> DagsterRun:
    return DagsterRun(
        job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), tags=Scope(shard=(index, count)).tags()
    )


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def snake_keys(mapping: dict[str, Any]) -> dict[str, Any]:
    """Helm's camelCase keys as the instance's snake_case ones (one level)."""
    return {snake(key): value for key, value in mapping.items()}


# ---- the instance: Dagster's schema and classes ------------------------------------------------


def test_instance_config_passes_dagsters_schema(tmp_path: Path, database_secret):
    (tmp_path / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    config, custom_instance_class = dagster_instance_config(str(tmp_path))
    assert custom_instance_class is None
    assert {"storage", "run_launcher", "run_coordinator", "concurrency"} <= set(config)
    assert {"run_monitoring", "run_retries"} <= set(config)


def test_storage_is_the_database_of_our_tables(deploy_instance, database_secret):
    """The secret's parts make the same database for the instance as DATABASE_URL for our
    tables, through psycopg2 as SigmaSightStorage uses locally."""
    postgres = process_config(pg_config(), deploy_instance["storage"]["postgres"])
    assert postgres.success, postgres.errors
    instance_url = sqlalchemy.make_url(pg_url_from_config(postgres.value))
    parts = database_secret
    database_url = (
        f"postgresql://{parts['DAGSTER_PG_USER']}:{quote(parts['DAGSTER_PG_PASSWORD'], safe='')}"
        f"@{parts['DAGSTER_PG_HOST']}:{parts['DAGSTER_PG_PORT']}/{parts['DAGSTER_PG_DB_NAME']}"
    )
    ours = sqlalchemy.make_url(dagster_storage_url(database_url))
    assert instance_url.get_driver_name() == "psycopg2"
    fields = ("drivername", "username", "password", "host", "port", "database")
    assert {f: getattr(instance_url, f) for f in fields} == {f: getattr(ours, f) for f in fields}


def test_pools_limit_each_of_our_pools_to_one_step(cluster_instance, deploy_instance):
    pools = cluster_instance.get_concurrency_config().pool_config
    assert pools.default_pool_limit == 1
    assert pools.pool_granularity is PoolGranularity.OP
    storage = cluster_instance.event_log_storage
    for pool in (MARKET_DATA_API_POOL, SYMBOL_TABLES_POOL):
        storage.initialize_concurrency_limit_to_default(pool)
        assert storage.get_concurrency_info(pool).slot_count == 1, pool
    # the same pools as the local instance (dagster.yaml at the repo root)
    assert (
        deploy_instance["concurrency"]["pools"]
        == load_yaml(LOCAL_INSTANCE_YAML)["concurrency"]["pools"]
    )


def test_run_queue_runs_at_most_eight_shards_and_one_run_per_shard(cluster_instance):
    queue = cluster_instance.get_concurrency_config().run_queue_config
    assert queue is not None, "the QueuedRunCoordinator is not configured"
    limits = queue.tag_concurrency_limits

    eight_running = [shard_run(i, 16) for i in range(8)]
    counter = TagConcurrencyLimitsCounter(limits, eight_running)
    assert counter.is_blocked(shard_run(8, 16))
    market_run = DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), tags={})
    assert not counter.is_blocked(market_run)
    # the shard runs leave room in the queue for the market run and the daily runs
    assert queue.max_concurrent_runs > len(eight_running)

    counter = TagConcurrencyLimitsCounter(limits, [shard_run(2, 8)])
    assert counter.is_blocked(shard_run(2, 8)), "a re-run must wait for the same shard's run"
    assert not counter.is_blocked(shard_run(3, 8))
    assert {limit["key"] for limit in limits} == {SHARD_TAG}


def test_dead_run_pods_are_failed_and_retried_as_on_one_machine(cluster_instance):
    local = load_yaml(LOCAL_INSTANCE_YAML)
    assert cluster_instance.run_monitoring_enabled
    assert cluster_instance.run_monitoring_max_resume_run_attempts == 0
    assert cluster_instance.run_retries_enabled
    assert cluster_instance.run_retries_max_retries == local["run_retries"]["max_retries"]
    assert (
        cluster_instance.run_retries_retry_on_asset_or_op_failure
        is local["run_retries"]["retry_on_asset_or_op_failure"]
    )


def k8s_launcher(deploy_instance: dict[str, Any], tmp_path: Path) -> K8sRunLauncher:
    """The real K8sRunLauncher from the instance config. Outside a cluster it reads a kubeconfig
    instead of the in-cluster credentials; nothing is sent to that API server."""
    settings = deploy_instance["run_launcher"]
    assert (settings["module"], settings["class"]) == ("dagster_k8s", K8sRunLauncher.__name__)
    config = process_config(K8sRunLauncher.config_type(), settings["config"])
    assert config.success, config.errors
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "unused"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    outside = {"load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    return K8sRunLauncher.from_config_value(None, {**config.value, **outside})


def test_k8s_run_launcher_builds_a_run_pod_with_our_secret_and_resources(
    deploy_instance, tmp_path: Path
):
    launcher = k8s_launcher(deploy_instance, tmp_path)
    run = shard_run(0, 4)
    context = launcher.get_container_context_for_run(run)
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=RUN_IMAGE, run_launcher=launcher),
        args=["dagster", "api", "execute_run", "{}"],
        job_name=f"dagster-run-{run.run_id}",
        pod_name=f"dagster-run-{run.run_id}",
        component="run_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={},
        env_vars=[],
    )
    expected = deploy_instance["run_launcher"]["config"]
    container = job.spec.template.spec.containers[0]
    assert context.namespace == expected["job_namespace"]
    assert container.image == RUN_IMAGE
    assert container.image_pull_policy == expected["image_pull_policy"]
    assert [s.secret_ref.name for s in container.env_from if s.secret_ref] == ["sigmasight-env"]
    assert container.resources.requests == expected["resources"]["requests"]
    assert container.resources.limits == expected["resources"]["limits"]
    assert job.spec.ttl_seconds_after_finished == 86400
    assert job.spec.template.spec.service_account_name == expected["service_account_name"]


# ---- Helm values: the same instance through the official chart ---------------------------------


def test_helm_uses_the_database_of_our_tables(helm, deploy_instance):
    postgres = helm["postgresql"]
    assert postgres["enabled"] is False
    assert helm["generatePostgresqlPasswordSecret"] is False
    assert postgres["postgresqlHost"] and postgres["postgresqlDatabase"]
    storage = deploy_instance["storage"]["postgres"]["postgres_db"]
    assert postgres["postgresqlScheme"] == storage["scheme"]
    assert postgres["postgresqlParams"] == storage["params"]


def test_helm_run_launcher_matches_the_instance(helm, deploy_instance):
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    values = helm["runLauncher"]["config"]["k8sRunLauncher"]
    instance = deploy_instance["run_launcher"]["config"]
    assert values["jobNamespace"] in (None, instance["job_namespace"])  # None: the release's
    assert values["loadInclusterConfig"] is instance["load_incluster_config"]
    assert values["imagePullPolicy"] == instance["image_pull_policy"]
    assert [secret["name"] for secret in values["envSecrets"]] == instance["env_secrets"]
    assert values["resources"] == instance["resources"]
    assert snake_keys(values["runK8sConfig"]) == instance["run_k8s_config"]


def test_helm_queue_pools_monitoring_and_retries_match_the_instance(helm, deploy_instance):
    daemon = helm["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] is True
    assert coordinator["type"] == deploy_instance["run_coordinator"]["class"]
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert snake_keys(queued) == deploy_instance["run_coordinator"]["config"]
    # run limits live in `concurrency.runs` only: the chart refuses them in both places
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & set(queued)

    concurrency = helm["concurrency"]
    assert concurrency["enabled"] is True
    instance = deploy_instance["concurrency"]
    assert snake_keys(concurrency["pools"]) == instance["pools"]
    assert snake_keys(concurrency["runs"]) == instance["runs"]

    assert snake_keys(daemon["runMonitoring"]) == deploy_instance["run_monitoring"]
    assert snake_keys(daemon["runRetries"]) == deploy_instance["run_retries"]


def test_helm_code_location_serves_our_module(helm, pyproject_dagster):
    user_deployments = helm["dagster-user-deployments"]
    assert user_deployments["enabled"] and user_deployments["enableSubchart"]
    (deployment,) = user_deployments["deployments"]
    args = deployment["codeServerArgs"]
    assert args[args.index("--module-name") + 1] == pyproject_dagster["module_name"]
    # the chart names the location after the deployment (no "_" in Kubernetes names)
    assert args[args.index("--location-name") + 1] == deployment["name"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", deployment["name"])
    assert deployment["port"] == int(dockerfile_cmd_option("--port"))
    assert {"name": "sigmasight-env"} in deployment["envSecrets"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True


# ---- the image ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, ARG defaults expanded."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions, defaults = [], {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        rest = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)), rest)
        if keyword.upper() == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_cmd() -> list[str]:
    (cmd,) = [args for keyword, args in final_stage() if keyword == "CMD"]
    return yaml.safe_load(cmd)  # the exec (JSON array) form


def dockerfile_cmd_option(option: str) -> str:
    cmd = dockerfile_cmd()
    return cmd[cmd.index(option) + 1]


def test_image_is_python_311_slim_installed_from_the_lock():
    instructions = dockerfile_instructions()
    bases = [args.split()[0] for keyword, args in instructions if keyword == "FROM"]
    assert bases and all(base.startswith("python:3.11-slim") for base in bases)
    syncs = [shlex.split(args) for keyword, args in instructions if "uv sync" in args]
    assert syncs, "no `uv sync` in the Dockerfile"
    for sync in syncs:
        assert "--frozen" in sync and "--no-dev" in sync, sync
    # the runtime stage gets the environment, not uv
    assert not any("uv" in shlex.split(args) for keyword, args in final_stage() if keyword == "RUN")


def test_image_leaves_out_only_packages_the_code_location_never_imports():
    """`--no-install-package` drops pgserver and dagster-webserver from the image: they must be
    locked packages, and no module of ours may import them when it is imported."""
    sync = next(shlex.split(a) for k, a in dockerfile_instructions() if "uv sync" in a)
    left_out = {sync[i + 1] for i, word in enumerate(sync) if word == "--no-install-package"}
    assert left_out == {"pgserver", "dagster-webserver"}
    locked = {p["name"] for p in tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())["package"]}
    assert left_out <= locked
    modules = {name.replace("-", "_") for name in left_out}
    for path in (PROJECT_ROOT / "sigmasight_pipeline").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & modules, f"{path}: {names}"


def test_image_serves_our_module_as_a_non_root_user(pyproject_dagster):
    stage = final_stage()
    assert not [args for keyword, args in stage if keyword == "ENTRYPOINT"], (
        "the chart and the run launcher pass their own arguments: an ENTRYPOINT would prefix them"
    )
    cmd = dockerfile_cmd()
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert dockerfile_cmd_option("--module-name") == pyproject_dagster["module_name"]
    assert dockerfile_cmd_option("--location-name") == pyproject_dagster["code_location_name"]
    assert dockerfile_cmd_option("--host") == "0.0.0.0"
    assert [args for keyword, args in stage if keyword == "EXPOSE"] == [
        dockerfile_cmd_option("--port")
    ]
    (user,) = [args for keyword, args in stage if keyword == "USER"]
    assert user.split(":")[0] not in ("root", "0")


def test_image_copies_what_the_package_reads_and_the_ignore_file_lets_it_through():
    copied = []
    for keyword, args in dockerfile_instructions():
        words = args.split()
        if keyword == "COPY" and not any(w.startswith("--from") for w in words):
            copied += [w.rstrip("/").removeprefix("./") for w in words[:-1]]
    needed = {"pyproject.toml", "uv.lock", "README.md", "workspace.yaml", "sql", "data"}
    assert needed | {"sigmasight_pipeline"} <= set(copied)
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    assert DOCKERIGNORE.read_text().splitlines().count("*") == 1  # everything else stays out
    for source in copied:
        assert source in allowed, f"{source} is copied but excluded by {DOCKERIGNORE.name}"
        assert (PROJECT_ROOT / source).exists(), source


# ---- the shard launcher ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def launcher_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("launch_sharded_backfill", LAUNCHER_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    return module


def test_a_sharded_backfill_is_a_market_run_a_symbol_run_then_one_run_per_shard(
    launcher_script,
):
    """The launcher queues the market run; when it succeeds, the sensor asks the symbol
    analytics run over the window, and when that succeeds, one portfolio run per shard."""
    from dagster import (
        DagsterEvent,
        DagsterEventType,
        SkipReason,
        build_run_status_sensor_context,
    )

    from sigmasight_pipeline.definitions import defs
    from sigmasight_pipeline.schedules import backfill_next_stage

    plan = BackfillPlan.ending(pd.Timestamp("2026-11-20"))
    assets, tags = launcher_script.market_run_request(pd.Timestamp("2026-11-20"), 90, 4)
    first, start, last = (plan.key(d) for d in (plan.history[0], plan.window[0], plan.window[-1]))
    assert tuple(assets) == tuple(MARKET_ASSETS)
    assert tags["dagster/asset_partition_range_start"] == first
    assert tags["dagster/asset_partition_range_end"] == last
    assert (tags["sigmasight/stage"], tags["sigmasight/shards"]) == ("market", "4")

    instance = DagsterInstance.ephemeral()

    def after(run_tags: dict) -> list:
        run = instance.create_run_for_job(
            defs.resolve_implicit_global_asset_job_def(), tags=run_tags, run_config={}
        )
        context = build_run_status_sensor_context(
            sensor_name="backfill_next_stage",
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=DagsterEvent(DagsterEventType.RUN_SUCCESS.value, run.job_name),
        )
        return backfill_next_stage(context)

    (symbols,) = after(tags)
    assert {k.to_user_string() for k in symbols.asset_selection} == set(SYMBOL_ASSETS)
    assert symbols.tags["sigmasight/stage"] == "symbols"
    requests = after(symbols.tags)
    assert [Scope.from_tags(r.tags).shard for r in requests] == [(i, 4) for i in range(4)]
    portfolio_assets = set(partitioned_assets()) - set(MARKET_ASSETS) - set(SYMBOL_ASSETS)
    for request in (symbols, *requests):
        assert request.tags["dagster/asset_partition_range_start"] == start
        assert request.tags["dagster/asset_partition_range_end"] == last
    for request in requests:
        assert {k.to_user_string() for k in request.asset_selection} == portfolio_assets
    assert isinstance(after(requests[0].tags), SkipReason)  # the shard runs are the last stage


def test_launcher_names_dagsters_asset_job_and_repository(launcher_script):
    from sigmasight_pipeline.definitions import defs

    assert defs.resolve_implicit_global_asset_job_def().name == launcher_script.ASSET_JOB
    assert defs.get_repository_def().name == launcher_script.REPOSITORY
    helm = load_yaml(HELM_VALUES)
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    assert deployment["name"] == launcher_script.DEFAULT_LOCATION
