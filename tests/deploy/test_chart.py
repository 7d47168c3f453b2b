"""The Helm chart (helm/ractogateway-kafka) and the plain manifests of examples/kubernetes.

No cluster, no broker: `helm lint` and `helm template` with the project's own helm (`make helm`),
and every rendered manifest validated offline against the Kubernetes schemas with
`kubernetes-validate --strict`. The variants are the values files of tests/deploy/values/ plus a
parent chart that includes the sidecar template in its own Deployment (mode include)."""

import base64
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML (kubernetes-validate's) ships no types

import app
from app.settings import Settings
from tests.helpers import ROOT
from tests.helpers.chart import (
    CHART,
    VALUES,
    Manifest,
    containers,
    env_of,
    manifests,
    of_kind,
    one,
    pod_spec,
    recorder,
    render,
    run_helm,
    template,
    validate,
    workload,
)

EXAMPLES = ROOT / "examples" / "kubernetes"
VARIANTS = ["default", "sidecar", "sasl-ssl", "api-keys", "spool-pvc", "inline-secrets"]
# The one kind without a schema in kubernetes-validate (a CRD): checked by its own test below.
KINDS_WITHOUT_SCHEMA = {"ServiceMonitor"}
SETTINGS = {f"RG_{name.upper()}" for name in Settings.model_fields}
# What the chart sets other than through its ConfigMap: the listener (container env) and the
# secrets (env from Secrets).
CONTAINER_ENV = {"RG_HOST", "RG_PORT", "RG_ALLOW_UNAUTHENTICATED"}
SECRET_SETTINGS = {"RG_KAFKA_SASL_PASSWORD", "RG_SCHEMA_REGISTRY_PASSWORD", "RG_API_KEYS"}
INLINE_MARKER = "inline-secret-marker"
SPOOL_DEFAULTS = (1024**3, 16 * 1024**2)  # spool.maxBytes, spool.minFreeBytes in values.yaml

# A user's chart that includes the sidecar template in its own Deployment (mode include).
PARENT_CHART = EXAMPLES / "parent-chart"


@pytest.fixture(scope="module")
def parent_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example parent chart with this chart in its charts/ folder (what `helm dependency
    update` would put there)."""
    parent = tmp_path_factory.mktemp("charts") / "example-app"
    shutil.copytree(PARENT_CHART, parent)
    shutil.copytree(CHART, parent / "charts" / "ractogateway-kafka")
    return parent


@pytest.fixture(scope="module")
def rendered(parent_chart: Path) -> dict[str, str]:
    """Each variant's manifests: values.yaml alone, each values file, the parent chart."""
    texts = {name: render(*([] if name == "default" else [name])) for name in VARIANTS}
    texts["include"] = render(chart=parent_chart)
    return texts


@pytest.fixture(scope="module")
def objects(rendered: dict[str, str]) -> dict[str, list[Manifest]]:
    return {name: manifests(text) for name, text in rendered.items()}


def test_chart_app_version_is_the_apps_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == app.__version__
    # The example parent chart asks for this very version (helm dependency update finds it).
    parent = yaml.safe_load((PARENT_CHART / "Chart.yaml").read_text())
    [dependency] = parent["dependencies"]
    assert (dependency["name"], dependency["version"]) == (chart["name"], chart["version"])
    assert (PARENT_CHART / dependency["repository"].removeprefix("file://")).resolve() == CHART


def test_helm_lint_passes_for_every_variant(parent_chart: Path) -> None:
    plain = run_helm("lint", CHART)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    for name in VARIANTS:
        values = [] if name == "default" else ["-f", str(VALUES / f"{name}.yaml")]
        # --kube-version: the sidecar needs 1.29, and helm's own default may be older.
        result = run_helm("lint", "--strict", "--kube-version", "1.33.0", CHART, *values)
        assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"
    parent = run_helm("lint", "--strict", "--kube-version", "1.33.0", parent_chart)
    assert parent.returncode == 0, parent.stdout + parent.stderr


def test_every_rendered_manifest_passes_kubernetes_validate_strict(
    rendered: dict[str, str], tmp_path: Path
) -> None:
    files = []
    for name, text in rendered.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        files.append(path)
    results = validate(files)
    for path in files:
        lines = results[path]
        kinds = [obj["kind"] for obj in manifests(path.read_text())]
        passed = [line for line in lines if line.startswith("INFO") and " passed " in line]
        unchecked = [line for line in lines if line.startswith("WARN")]
        assert not [line for line in lines if line.startswith(("ERROR", "FATAL"))], lines
        assert len(passed) == len([k for k in kinds if k not in KINDS_WITHOUT_SCHEMA]), lines
        # Only the kinds named above may go unchecked, and only for want of a schema.
        for line in unchecked:
            assert "Couldn't find schema for kind" in line, line
            assert any(f"kind {kind} " in line for kind in KINDS_WITHOUT_SCHEMA), line
        print(f"{path.name}: {len(passed)} validated, {len(unchecked)} without a schema")


def test_the_examples_pass_kubernetes_validate_strict() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert {path.name for path in files} == {"native-sidecar.yaml", "two-containers.yaml"}
    results = validate(files)
    # The classic form is for clusters without native sidecars: it must be valid there too.
    results |= {
        Path(f"{path} (1.27)"): lines
        for path, lines in validate([EXAMPLES / "two-containers.yaml"], "1.27.0").items()
    }
    for path, lines in results.items():
        assert lines, path
        assert all(line.startswith("INFO") and " passed " in line for line in lines), lines


def test_the_service_monitor_selects_the_service_and_scrapes_metrics(
    objects: dict[str, list[Manifest]],
) -> None:
    # kubernetes-validate has no schema for this CRD: its shape is checked here.
    monitor = one(objects["spool-pvc"], "ServiceMonitor")
    service = one(objects["spool-pvc"], "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert re.fullmatch(r"[0-9]+(ms|s|m|h)", endpoint["interval"])
    assert not of_kind(objects["default"], "ServiceMonitor"), "off by default"


@pytest.mark.parametrize(
    ("sets", "named"),
    [
        ({"replicaCount": "two"}, "replicaCount"),
        ({"mode": "daemon"}, "mode"),
        ({"spool.enabled": "maybe"}, "spool"),
        ({"kafka.securityProtocol": "TLS"}, "securityProtocol"),
        ({"extraSettings.RG_MAX_IN_FLIGHT_BYTE": "1"}, "RG_MAX_IN_FLIGHT_BYTE"),
        ({"replicaCont": "2"}, "replicaCont"),
    ],
)
def test_the_values_schema_rejects_wrong_values(sets: dict[str, str], named: str) -> None:
    # --set parses "two" as a string, "maybe" as a string: the schema, not a template, refuses.
    for command in ("template", "lint"):
        args = ["--set", ",".join(f"{k}={v}" for k, v in sets.items())]
        result = run_helm(command, CHART, *args)
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"helm {command} accepted {sets}"
        assert "schema" in output, output
        assert named in output, output


def test_no_secret_is_rendered_by_default(objects: dict[str, list[Manifest]]) -> None:
    for name in ("default", "sidecar", "sasl-ssl", "api-keys", "spool-pvc", "include"):
        assert not of_kind(objects[name], "Secret"), f"{name}: a Secret without inline values"
        for obj in objects[name]:
            data = obj.get("data", {})
            assert not SECRET_SETTINGS & set(data), f"{name}: a secret setting in {obj['kind']}"
        for container in containers(pod_spec(workload(objects[name]))):
            for entry in container.get("env", []):
                if entry["name"] in SECRET_SETTINGS:
                    assert "value" not in entry, entry
                    assert entry["valueFrom"]["secretKeyRef"]["name"], entry


def test_the_schema_registry_settings_come_from_the_values(
    objects: dict[str, list[Manifest]],
) -> None:
    data = one(objects["inline-secrets"], "ConfigMap")["data"]
    assert data["RG_SCHEMA_REGISTRY_URL"] == "http://registry:8080/apis/ccompat/v7"
    assert data["RG_SCHEMA_WIRE_FORMAT"] == "confluent"
    assert data["RG_SCHEMA_REQUIRED"] == "false"
    assert data["RG_SCHEMA_REGISTRY_USERNAME"] == "audit-writer"
    assert not {name for name in one(objects["default"], "ConfigMap")["data"] if "SCHEMA" in name}


def test_inline_secrets_go_into_one_secret_and_nowhere_else(
    rendered: dict[str, str], objects: dict[str, list[Manifest]]
) -> None:
    secret = one(objects["inline-secrets"], "Secret")
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert set(decoded) == {
        "kafka-sasl-password",
        "schema-registry-password",
        "api-keys",
        "signing-key.pem",
        "redaction.key",
    }
    assert all(INLINE_MARKER in value for value in decoded.values())
    # In plain text nowhere: not in the ConfigMap, not in env, not in annotations.
    assert INLINE_MARKER not in rendered["inline-secrets"]
    spec = pod_spec(workload(objects["inline-secrets"]))
    env = env_of(recorder(spec))
    name = secret["metadata"]["name"]
    assert env["RG_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == name
    assert env["RG_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == name
    [files] = [v for v in spec["volumes"] if v["name"] == "ractogateway-kafka-secrets"]
    assert {s["secret"]["name"] for s in files["projected"]["sources"]} == {name}


def test_a_secret_given_twice_is_refused() -> None:
    result = template(
        sets={
            "auth.apiKeys.existingSecret": "keys",
            "auth.apiKeys.value": "x",
        }
    )
    assert result.returncode != 0
    assert "auth.apiKeys: give existingSecret or value, not both" in result.stderr


def test_every_container_runs_locked_down(objects: dict[str, list[Manifest]]) -> None:
    for name, found in objects.items():
        spec = pod_spec(workload(found))
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        if name != "include":  # the parent's pod spec is the parent's
            assert spec["automountServiceAccountToken"] is False, name
        for container in containers(spec):
            context = container.get("securityContext")
            assert context, f"{name}: container {container['name']} has no securityContext"
            assert context["runAsNonRoot"] is True, (name, container["name"])
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, container["name"])
        context = recorder(spec)["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (10001, 10001), name
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name


def emitted_settings(found: list[Manifest]) -> set[str]:
    """Every RG_* name the chart gives the recorder: ConfigMap keys and the recorder's env (the
    app's RG_URL is the app's)."""
    names = {key for cm in of_kind(found, "ConfigMap") for key in cm["data"]}
    names |= set(env_of(recorder(pod_spec(workload(found)))))
    return {name for name in names if name.startswith("RG_")}


def test_every_setting_the_chart_emits_is_a_settings_field(
    objects: dict[str, list[Manifest]],
) -> None:
    everything: set[str] = set()
    for name, found in objects.items():
        names = emitted_settings(found)
        assert names - SETTINGS == set(), f"{name}: not settings: {names - SETTINGS}"
        everything |= names
    print(f"{len(everything)} RG_* settings emitted across the variants")


def test_every_setting_can_be_set_through_the_chart_once() -> None:
    # Typed values, extraSettings (the schema's list of names), container env: together every
    # Settings field, each by one way only (a name in two would be a duplicate key).
    schema = json.loads((CHART / "values.schema.json").read_text())
    extra = set(schema["properties"]["extraSettings"]["propertyNames"]["enum"])
    config = (CHART / "templates" / "configmap.yaml").read_text()
    typed = set(re.findall(r"^\s+(RG_[A-Z0-9_]+):", config, re.MULTILINE))
    ways = [typed, extra, CONTAINER_ENV, SECRET_SETTINGS]
    assert set().union(*ways) == SETTINGS, (
        f"missing: {SETTINGS - set().union(*ways)}; unknown: {set().union(*ways) - SETTINGS}"
    )
    assert sum(map(len, ways)) == len(SETTINGS), "a setting reachable two ways"


def test_standalone_without_api_keys_is_refused_unless_allowed() -> None:
    refused = template(allowed=False)
    assert refused.returncode != 0
    assert "mode standalone serves on every interface of the pod" in refused.stderr
    assert "auth.apiKeys.existingSecret" in refused.stderr
    assert "auth.allowUnauthenticated" in refused.stderr
    with_keys = env_of(
        recorder(pod_spec(one(manifests(render("api-keys", allowed=False)), "Deployment")))
    )
    assert "RG_ALLOW_UNAUTHENTICATED" not in with_keys
    allowed = env_of(recorder(pod_spec(one(manifests(render()), "Deployment"))))
    assert allowed["RG_ALLOW_UNAUTHENTICATED"]["value"] == "true"
    # The sidecar listens on 127.0.0.1: no keys needed, and the allow is not passed on.
    sidecar = manifests(render("sidecar", allowed=False))
    assert "RG_ALLOW_UNAUTHENTICATED" not in env_of(recorder(pod_spec(workload(sidecar))))


def test_standalone_serves_on_all_interfaces_with_http_probes(
    objects: dict[str, list[Manifest]],
) -> None:
    found = objects["default"]
    spec = pod_spec(one(found, "Deployment"))
    container = recorder(spec)
    env = env_of(container)
    assert (env["RG_HOST"]["value"], env["RG_PORT"]["value"]) == ("0.0.0.0", "8080")
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert "restartPolicy" not in container
    service = one(found, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert container["image"] == f"ractogateway-kafka:{app.__version__}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    configmap = one(found, "ConfigMap")
    assert {"name": configmap["metadata"]["name"]} == container["envFrom"][0]["configMapRef"]
    labels = one(found, "Deployment")["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "ractogateway-kafka"
    assert labels["app.kubernetes.io/instance"] == "audit"
    assert labels["app.kubernetes.io/managed-by"] == "Helm"


def check_native_sidecar(container: Manifest) -> None:
    """A recorder as native sidecar: restarted always, on loopback, probed from inside."""
    assert container["restartPolicy"] == "Always"
    assert "lifecycle" not in container, "stopped after the app: no preStop sleep"
    env = env_of(container)
    assert env["RG_HOST"]["value"] == "127.0.0.1"
    assert "ports" not in container
    assert container["startupProbe"]["exec"]["command"] == ["ractogateway-kafka", "probe", "ready"]
    assert container["livenessProbe"]["exec"]["command"] == ["ractogateway-kafka", "probe", "live"]
    assert container["readinessProbe"]["exec"]["command"][-1] == "ready"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["ractogateway-kafka-state"] == "/var/lib/ractogateway-kafka"


def test_sidecar_mode_runs_the_app_with_the_recorder_as_native_sidecar(
    objects: dict[str, list[Manifest]],
) -> None:
    found = objects["sidecar"]
    assert not of_kind(found, "Service"), "a sidecar is for its own pod"
    deployment = one(found, "Deployment")
    spec = pod_spec(deployment)
    [sidecar] = spec["initContainers"]
    check_native_sidecar(sidecar)
    [web] = spec["containers"]
    assert web["image"] == "example-app:1.0.0"
    assert env_of(web)["RG_URL"]["value"] == "http://127.0.0.1:8080"
    assert env_of(web)["APP_MODE"]["value"] == "production"
    # The app stops first (20 s), then the recorder drains (1 s), finishes (30 s) and flushes.
    assert spec["terminationGracePeriodSeconds"] == 20 + 1 + 30 + 15
    assert deployment["spec"]["replicas"] == 3


def test_a_parent_chart_includes_the_sidecar_template(objects: dict[str, list[Manifest]]) -> None:
    found = objects["include"]
    assert sorted(obj["kind"] for obj in found) == ["ConfigMap", "Deployment"]
    spec = pod_spec(one(found, "Deployment"))
    sidecar = recorder(spec)
    check_native_sidecar(sidecar)
    configmap = one(found, "ConfigMap")
    assert sidecar["envFrom"][0]["configMapRef"]["name"] == configmap["metadata"]["name"]
    assert configmap["data"]["RG_KAFKA_BOOTSTRAP_SERVERS"] == "kafka.data:9092"
    assert sidecar["image"] == f"ractogateway-kafka:{app.__version__}", "this chart's appVersion"
    assert (
        env_of(sidecar)["RG_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"]
        == "example-app-audit-keys"
    )
    volumes = {v["name"] for v in spec["volumes"]}
    assert volumes == {"ractogateway-kafka-state", "ractogateway-kafka-secrets"}


def test_the_settings_follow_the_values(
    objects: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = one(objects["sasl-ssl"], "ConfigMap")["data"]
    assert data["RG_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["RG_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert data["RG_KAFKA_SSL_CAFILE"] == "/etc/ractogateway-kafka/secrets/kafka-ca.crt"
    assert data["RG_KAFKA_SSL_KEYFILE"] == "/etc/ractogateway-kafka/secrets/kafka-client.key"
    data = one(objects["api-keys"], "ConfigMap")["data"]
    assert data["RG_AUDIT_SIGNING_KEY_FILE"] == "/etc/ractogateway-kafka/secrets/signing-key.pem"
    assert data["RG_REDACTION"] == "hash"
    assert data["RG_REDACTION_METADATA_FIELDS"] == "customer_email,phone"
    assert json.loads(data["RG_REDACTION_PATTERNS"]) == {"ticket": "TCK-[0-9]{6}"}
    assert data["RG_MAX_IN_FLIGHT_BYTES"] == "33554432"
    assert data["RG_AUDIT_RETIRED_KEYS_DIR"] == "/etc/ractogateway-kafka/retired-keys"
    spec = pod_spec(one(objects["api-keys"], "Deployment"))
    mounts = {m["name"]: m["mountPath"] for m in recorder(spec)["volumeMounts"]}
    assert mounts["ractogateway-kafka-retired-keys"] == data["RG_AUDIT_RETIRED_KEYS_DIR"]
    [retired] = [v for v in spec["volumes"] if v["name"] == "ractogateway-kafka-retired-keys"]
    assert retired["configMap"] == {"name": "audit-retired-keys"}
    # The service reads what the chart writes, as the environment the ConfigMap becomes.
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.audit_topic == "llm.audit"
    assert settings.redaction_patterns == {"ticket": "TCK-[0-9]{6}"}
    assert settings.redaction_metadata_fields == ["customer_email", "phone"]
    assert settings.max_in_flight_bytes == 33554432
    default = one(objects["default"], "ConfigMap")["data"]
    assert set(default) == {
        "RG_KAFKA_BOOTSTRAP_SERVERS",
        "RG_KAFKA_SECURITY_PROTOCOL",
        "RG_SPOOL_DIR",
        "RG_SPOOL_MAX_BYTES",
        "RG_SPOOL_MIN_FREE_BYTES",
        "RG_SHUTDOWN_DRAIN_S",
        "RG_SHUTDOWN_TIMEOUT_S",
    }, "only what the values set, and what the chart sizes volumes and grace from"


def quantity_bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
    number, unit = re.fullmatch(r"([0-9]+)([KMGT]i)?", quantity).groups()  # type: ignore[union-attr]
    return int(number) * units.get(unit or "", 1)


def test_the_spool_volume_outsizes_the_spool(objects: dict[str, list[Manifest]]) -> None:
    spec = pod_spec(one(objects["default"], "Deployment"))
    [state] = [v for v in spec["volumes"] if v["name"] == "ractogateway-kafka-state"]
    size = quantity_bytes(state["emptyDir"]["sizeLimit"])
    data = one(objects["default"], "ConfigMap")["data"]
    floor = int(data["RG_SPOOL_MAX_BYTES"]) + int(data["RG_SPOOL_MIN_FREE_BYTES"])
    assert (int(data["RG_SPOOL_MAX_BYTES"]), int(data["RG_SPOOL_MIN_FREE_BYTES"])) == (
        SPOOL_DEFAULTS
    )
    assert floor < size <= floor + SPOOL_DEFAULTS[0] // 8 + 1024**2
    print(f"emptyDir sizeLimit {state['emptyDir']['sizeLimit']} for a spool floor of {floor} B")
    # Below the floor the pod would be evicted before the spool says it is full.
    result = template(sets={"spool.sizeLimit": "1Gi"})
    assert result.returncode != 0
    assert "spool.sizeLimit 1Gi is below spool.maxBytes + spool.minFreeBytes" in result.stderr
    for given in ("2Gi", "2147483648"):  # a number of bytes too
        spec = pod_spec(one(manifests(render(sets={"spool.sizeLimit": given})), "Deployment"))
        [state] = [v for v in spec["volumes"] if v["name"] == "ractogateway-kafka-state"]
        assert state["emptyDir"]["sizeLimit"] == given


def test_spool_off_sets_an_empty_folder() -> None:
    found = manifests(render(sets={"spool.enabled": "false"}))
    data = one(found, "ConfigMap")["data"]
    assert data["RG_SPOOL_DIR"] == ""
    assert "RG_SPOOL_MAX_BYTES" not in data
    # The state volume stays: temporary files go there with a read-only root filesystem.
    spec = pod_spec(one(found, "Deployment"))
    assert {v["name"] for v in spec["volumes"]} == {"ractogateway-kafka-state"}


def test_a_persistent_spool_gets_a_claim_per_pod(objects: dict[str, list[Manifest]]) -> None:
    found = objects["spool-pvc"]
    assert not of_kind(found, "Deployment")
    statefulset = one(found, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "ractogateway-kafka-state"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    floor = 4 * 1024**3 + 64 * 1024**2
    assert quantity_bytes(claim["spec"]["resources"]["requests"]["storage"]) > floor
    spec = pod_spec(statefulset)
    assert "ractogateway-kafka-state" not in {v["name"] for v in spec.get("volumes", [])}


def test_one_existing_claim_is_refused_for_several_replicas() -> None:
    sets = {"spool.persistence.enabled": "true", "spool.persistence.existingClaim": "spool"}
    result = template(sets=sets | {"replicaCount": "2"})
    assert result.returncode != 0
    assert "one spool folder serves one process, and replicaCount is 2" in result.stderr
    # One replica: a Deployment that lets go of the claim before the next pod starts.
    deployment = one(manifests(render(sets=sets | {"replicaCount": "1"})), "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    [state] = [
        v for v in pod_spec(deployment)["volumes"] if v["name"] == "ractogateway-kafka-state"
    ]
    assert state["persistentVolumeClaim"] == {"claimName": "spool"}


def test_the_grace_period_covers_the_shutdown(
    objects: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    spec = pod_spec(one(objects["default"], "Deployment"))
    data = one(objects["default"], "ConfigMap")["data"]
    bound = float(data["RG_SHUTDOWN_DRAIN_S"]) + float(data["RG_SHUTDOWN_TIMEOUT_S"])
    # Standalone, a preStop sleep comes first: the Service's endpoints drop the pod meanwhile.
    assert recorder(spec)["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert spec["terminationGracePeriodSeconds"] == 5 + math.ceil(bound) + 15
    slow = tmp_path / "slow.yaml"
    slow.write_text("shutdown: {drainSeconds: 2.5, timeoutSeconds: 60}\n")
    found = manifests(render(slow))
    assert pod_spec(one(found, "Deployment"))["terminationGracePeriodSeconds"] == 5 + 63 + 15
    result = template(sets={"terminationGracePeriodSeconds": "30"})
    assert result.returncode != 0
    assert "terminationGracePeriodSeconds 30 is below 51" in result.stderr


def test_the_pod_disruption_budget_lets_a_single_replica_drain(
    objects: dict[str, list[Manifest]],
) -> None:
    for name in ("default", "sidecar", "spool-pvc"):
        budget = one(objects[name], "PodDisruptionBudget")
        assert budget["spec"]["maxUnavailable"] == 1
        pod_labels = workload(objects[name])["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_sidecar_mode_needs_an_app_and_native_sidecars() -> None:
    result = template(sets={"mode": "sidecar"})
    assert "set app.image.repository" in result.stderr
    old = run_helm(
        "template", "audit", CHART, "--kube-version", "1.28.0", "-f", VALUES / "sidecar.yaml"
    )
    assert old.returncode != 0
    assert "native sidecars (Kubernetes >= 1.29)" in old.stderr


@pytest.mark.parametrize("variant", [*VARIANTS, "include-mode"])
def test_the_notes_render(variant: str, tmp_path: Path) -> None:
    # helm template does not print NOTES.txt: a copy of the chart renders it as a ConfigMap.
    chart = tmp_path / "ractogateway-kafka"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "notes-check.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n'
    )
    values = {"default": [], "include-mode": []}.get(variant, [variant])
    sets = {"mode": "include"} if variant == "include-mode" else None
    found = manifests(render(*values, sets=sets, chart=chart))
    [notes] = [obj for obj in found if obj["metadata"]["name"] == "notes"]
    text = notes["data"]["notes"]
    assert "ractogateway-kafka" in text
    assert INLINE_MARKER not in text
    print(f"--- NOTES ({variant})\n{text}")


def undocumented_values(text: str) -> list[str]:
    """The keys of a values.yaml that no comment names: a key is documented by a comment right
    above it that starts with its dotted path (`# spool.maxBytes: ...`), which covers what is
    below it too (a Kubernetes object such as `resources`); a key without one must be a group of
    documented keys."""
    missing = []
    path: list[tuple[int, str]] = []  # (indent, key) of the keys enclosing the current line
    comment: list[str] = []
    skip_below: int | None = None  # the indent of a documented key whose subtree is covered
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        match = re.match(r"^( *)([A-Za-z][\w-]*):(.*)$", line)
        if not match:
            if not stripped:
                comment = []
            continue
        indent, key, rest = len(match[1]), match[2], match[3].strip()
        if skip_below is not None and indent > skip_below:
            comment = []
            continue
        skip_below = None
        path = [(i, k) for i, k in path if i < indent]
        dotted = ".".join([k for _, k in path] + [key])
        if any(c.startswith(f"# {dotted}:") for c in comment):
            skip_below = indent
        elif rest:  # a value of its own and no comment naming it
            missing.append(dotted)
        path.append((indent, key))
        comment = []
    return missing


def test_every_value_is_commented_with_its_name() -> None:
    assert undocumented_values((CHART / "values.yaml").read_text()) == []
    # The check itself catches a bare key.
    assert undocumented_values("a:\n  # a.b: documented\n  b: 1\n  c: 2\n") == ["a.c"]
