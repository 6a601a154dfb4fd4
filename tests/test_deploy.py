"""deploy/: the Kubernetes manifests, the compose file and the Prometheus config parse, and agree with
each other and with the code: every volume names an object that is defined, every DOCQA_* variable and
every key of the ConfigMap's docqa.yaml is a real setting (and validates), probes and the scrape path
are routes the app serves, ports line up."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from docqa.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict]:
    objs = {}
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            assert doc["apiVersion"] and doc["metadata"]["name"], f
            objs[(doc["kind"], doc["metadata"]["name"])] = doc
    return objs


class Served:
    """Whether the app answers a GET on a path (anything but 404: /readyz is 503 while loading)."""

    def __init__(self, client):
        self.client = client

    def __contains__(self, path: str) -> bool:
        return self.client.get(path).status_code != 404


@pytest.fixture(scope="module")
def app_paths(tmp_path_factory):
    from fastapi.testclient import TestClient

    from service.app import create_app

    app = create_app(settings=Settings(home=tmp_path_factory.mktemp("deploy-home")))
    with TestClient(app) as client:
        yield Served(client)


# variables docqa reads that are not settings: where the settings file and the built models are
NOT_SETTINGS = {"DOCQA_CONFIG", "DOCQA_MODELS_DIR"}


def _is_known(env_name: str) -> bool:
    return env_name in NOT_SETTINGS or env_name[len("DOCQA_"):].lower() in Settings.model_fields


def test_the_manifest_set_is_complete(k8s) -> None:
    kinds = {kind for kind, _ in k8s}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim"} <= kinds


def test_the_deployment_references_what_is_defined(k8s, app_paths) -> None:
    dep = k8s[("Deployment", "docqa")]
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    volumes = {v["name"]: v for v in pod["volumes"]}
    for v in volumes.values():
        if "persistentVolumeClaim" in v:
            assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in k8s
        if "configMap" in v:
            assert ("ConfigMap", v["configMap"]["name"]) in k8s
        if "secret" in v:
            assert ("Secret", v["secret"]["secretName"]) in k8s
    (c,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert set(mounts.values()) <= set(volumes)
    env = {e["name"]: e["value"] for e in c["env"]}
    for name in env:
        if name.startswith("DOCQA_"):
            assert _is_known(name), name
    # the files the environment points at are inside the volumes that hold them
    assert any(env["DOCQA_CONFIG"].startswith(p + "/") and volumes[n].get("configMap") for p, n in mounts.items())
    assert any(env["DOCQA_KEYS_FILE"].startswith(p + "/") and volumes[n].get("secret") for p, n in mounts.items())
    assert mounts[env["DOCQA_HOME"]] == "data"
    config_key = Path(env["DOCQA_CONFIG"]).name
    assert config_key in k8s[("ConfigMap", volumes[mounts[str(Path(env["DOCQA_CONFIG"]).parent)]]["configMap"]
                                  ["name"])]["data"]
    keys_secret = k8s[("Secret", volumes[mounts[str(Path(env["DOCQA_KEYS_FILE"]).parent)]]["secret"]["secretName"])]
    assert Path(env["DOCQA_KEYS_FILE"]).name in keys_secret["stringData"]
    # probes and the scrape path are routes the app serves, on the container's port
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] in app_paths and get["port"] in port_names, probe
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/path"] in app_paths and int(ann["prometheus.io/port"]) in port_names.values()
    assert c["args"][:2] == ["docqa", "serve"] and "0.0.0.0" in c["args"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"  # one writer, RWO volume


def test_the_readers_share_the_writers_volume_read_only(k8s, app_paths) -> None:
    """deploy/k8s/readers/: N read-only replicas on the writer's KB volume (ReadWriteMany), own Service."""
    objs = {}
    for f in sorted((DEPLOY / "k8s" / "readers").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            objs[(doc["kind"], doc["metadata"]["name"])] = doc
    writer = k8s[("Deployment", "docqa")]["spec"]["template"]["spec"]
    dep = objs[("Deployment", "docqa-read")]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["spec"]["replicas"] > 1 and c["args"][:2] == ["docqa", "serve"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    data_claim = volumes["data"]["persistentVolumeClaim"]
    writer_claim = {v["name"]: v for v in writer["volumes"]}["data"]["persistentVolumeClaim"]["claimName"]
    assert data_claim["claimName"] == writer_claim and data_claim["readOnly"] is True
    assert objs[("PersistentVolumeClaim", writer_claim)]["spec"]["accessModes"] == ["ReadWriteMany"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert mounts[env["DOCQA_HOME"]]["readOnly"] is True
    for name in env:
        if name.startswith("DOCQA_"):
            assert _is_known(name), name
    audit_dir = str(Path(env["DOCQA_AUDIT_LOG"]).parent)
    assert audit_dir in mounts and not mounts[audit_dir].get("readOnly")  # the KB volume is read-only: not there
    assert ("PersistentVolumeClaim", volumes[mounts[audit_dir]["name"]]["persistentVolumeClaim"]["claimName"]) in objs
    for v in volumes.values():  # config and keys are the writer's
        if "configMap" in v:
            assert ("ConfigMap", v["configMap"]["name"]) in k8s
        if "secret" in v:
            assert ("Secret", v["secret"]["secretName"]) in k8s
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] in app_paths
    svc = objs[("Service", "docqa-read")]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["selector"] != k8s[("Service", "docqa")]["spec"]["selector"]  # questions, not uploads


def test_the_service_targets_the_container_port(k8s) -> None:
    svc = k8s[("Service", "docqa")]
    dep = k8s[("Deployment", "docqa")]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    names = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert all(p["targetPort"] in names for p in svc["spec"]["ports"])


def test_the_configmap_holds_valid_settings(k8s) -> None:
    data = yaml.safe_load(k8s[("ConfigMap", "docqa-config")]["data"]["docqa.yaml"])
    unknown = set(data) - set(Settings.model_fields)
    assert not unknown, unknown
    s = Settings(**data)  # types and ranges validate
    assert s.log_format == "json" and s.max_concurrent_answers >= 1


def test_the_example_secret_is_a_keys_file_the_server_reads(k8s, tmp_path: Path) -> None:
    from service.auth.keys import KeyStore

    path = tmp_path / "keys.json"
    path.write_text(k8s[("Secret", "docqa-keys")]["stringData"]["keys.json"], encoding="utf-8")
    assert KeyStore(path).records() == []  # parses; holds no key (real ones come from `docqa keys create`)


def _volume(spec: str) -> tuple[str, str]:
    """(source, target) of a compose short-syntax volume, ``${VAR:-default}`` taken as its default."""
    import re

    src, dst = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", spec).split(":")[:2]
    return src, dst


def test_compose_and_prometheus_agree(app_paths) -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    docqa = services["docqa"]
    for name in docqa["environment"]:
        if name.startswith("DOCQA_"):
            assert _is_known(name), name
    keys_dir = Path(docqa["environment"]["DOCQA_KEYS_FILE"]).parent
    assert any(_volume(v)[1] == str(keys_dir) for v in docqa["volumes"]), docqa["volumes"]
    prom = services["prometheus"]
    mounted = {_volume(v)[1]: _volume(v)[0] for v in prom["volumes"]}
    config = DEPLOY / mounted["/etc/prometheus/prometheus.yml"]
    scrape = yaml.safe_load(config.read_text(encoding="utf-8"))["scrape_configs"]
    (job,) = [j for j in scrape if j["job_name"] == "docqa"]
    assert job["metrics_path"] in app_paths
    host, port = job["static_configs"][0]["targets"][0].split(":")
    assert host in services and any(p.endswith(f":{port}") for p in docqa["ports"])
    for vol in [*docqa["volumes"], *prom["volumes"]]:
        src = _volume(vol)[0]
        if not src.startswith((".", "/")):
            assert src in compose["volumes"], src
