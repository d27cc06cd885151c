"""Offline validation of the deployment files: docker-compose.yml, deploy/Dockerfile, deploy/k8s/.

Each checker returns a list of problems (empty = fine). The tests assert the real files give no problems, and
the "mutation" tests break a copy of the real files in typical ways (a typo in a referenced ConfigMap name, a
missing HPA, a fixed port on a scalable service, ...) and assert the checker notices, so the checks can fail.

What must be deployed comes from the service registry (``shared.registry``): every process of every service
(``oms run <name>``) is a compose service, every production process a k8s Deployment, and a setting is known
when a registry service's settings class declares it.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
K8S_DIR = ROOT / "deploy" / "k8s"


def _registry() -> tuple[set[str], set[str], set[str]]:
    from shared.registry import nameko_classes, processes

    return (
        {p.name for p in processes(development=True)},
        set(nameko_classes()),
        {p.name for p in processes(development=False)},
    )


# `oms run <SERVICE>` names: every process of the registry; Nameko services; what a production cluster runs.
KNOWN_SERVICES, NAMEKO_SERVICES, K8S_SERVICES = _registry()
METRICS_PORT = 9100
GATEWAY_PORT = 8080
NAMESPACE = "oms"


# --------------------------------------------------------------------------------------------- helpers


def registry_settings() -> set[str]:
    """Every OMS_* variable a settings class of the registry declares (``oms config``, the README table)."""
    from shared.config import config_rows

    return {var for _service, var, _default, _desc in config_rows()}


@pytest.fixture(scope="module")
def settings() -> set[str]:
    return registry_settings()


def command_problem(cmd: Any) -> str | None:
    """None if cmd is `[oms] run <known service>` or `[oms] migrate`, else a description."""
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    if not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
        return f"command {cmd!r} is not a list of strings"
    args = cmd[1:] if cmd[:1] == ["oms"] else cmd
    if args == ["migrate"]:
        return None
    if len(args) == 2 and args[0] == "run" and args[1] in KNOWN_SERVICES:
        return None
    return f"command {cmd!r} is neither `oms run <{'|'.join(sorted(KNOWN_SERVICES))}>` nor `oms migrate`"


def run_target(cmd: Any) -> str | None:
    """'migrate' or the service name of a valid command."""
    if command_problem(cmd) is not None:
        return None
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    args = cmd[1:] if cmd[:1] == ["oms"] else cmd
    return args[-1]


# --------------------------------------------------------------------------------------------- compose


def env_dict(environment: Any) -> dict[str, Any]:
    if environment is None:
        return {}
    if isinstance(environment, dict):
        return dict(environment)
    out: dict[str, Any] = {}
    for item in environment:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def is_oms_service(svc: dict[str, Any]) -> bool:
    build = svc.get("build")
    if isinstance(build, dict) and str(build.get("dockerfile", "")).endswith("deploy/Dockerfile"):
        return True
    image = str(svc.get("image", ""))
    return image == "oms" or image.startswith("oms:")


def compose_problems(compose: dict[str, Any], settings: set[str], raw_text: str = "") -> list[str]:
    problems: list[str] = []
    services = compose.get("services")
    if not isinstance(services, dict) or not services:
        return ["compose: no services"]

    for required in ("postgres", "rabbitmq", "migrate", *sorted(KNOWN_SERVICES)):
        if required == "sandbox-mail" and any(str((s or {}).get("image", "")).startswith("axllent/mailpit")
                                              for s in services.values() if isinstance(s, dict)):
            continue  # compose runs the mailpit mail catcher in its place
        if required not in services:
            problems.append(f"compose: service {required!r} missing")

    for name, svc in services.items():
        where = f"compose service {name!r}"
        if not isinstance(svc, dict):
            problems.append(f"{where}: not a mapping")
            continue
        if "image" not in svc and "build" not in svc:
            problems.append(f"{where}: neither image nor build")
        build = svc.get("build")
        if isinstance(build, dict):
            context = ROOT / str(build.get("context", "."))
            dockerfile = context / str(build.get("dockerfile", "Dockerfile"))
            if not dockerfile.is_file():
                problems.append(f"{where}: dockerfile {dockerfile} does not exist")
        if "container_name" in svc:
            problems.append(f"{where}: container_name prevents `--scale`")

        deps = svc.get("depends_on") or {}
        dep_names = list(deps) if isinstance(deps, (dict, list)) else []
        for dep in dep_names:
            if dep not in services:
                problems.append(f"{where}: depends_on unknown service {dep!r}")
            elif dep == name:
                problems.append(f"{where}: depends on itself")
        if isinstance(deps, dict):
            for dep, spec in deps.items():
                cond = (spec or {}).get("condition", "service_started")
                if cond not in {"service_started", "service_healthy", "service_completed_successfully"}:
                    problems.append(f"{where}: depends_on {dep!r} has unknown condition {cond!r}")
                if cond == "service_healthy" and dep in services and "healthcheck" not in services[dep]:
                    problems.append(f"{where}: waits for {dep!r} to be healthy but it has no healthcheck")

        env = env_dict(svc.get("environment"))
        for key in env:
            if key.startswith("OMS_") and key not in settings:
                problems.append(f"{where}: undocumented setting {key}")

        if not is_oms_service(svc):
            continue
        if "env_file" in svc:
            problems.append(f"{where}: env_file hides settings from review; use environment")
        for key in env:
            if not key.startswith("OMS_"):
                problems.append(f"{where}: unexpected variable {key} (OMS processes take OMS_* settings)")
        for key in ("OMS_DATABASE_URL", "OMS_AMQP_URL"):
            if key not in env:
                problems.append(f"{where}: {key} not set")
                continue
            host = urlsplit(str(env[key])).hostname
            if host not in services:
                problems.append(f"{where}: {key} points at {host!r}, which is not a compose service")
        problem = command_problem(svc.get("command"))
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        target = run_target(svc.get("command"))
        deps_dict = deps if isinstance(deps, dict) else {d: {} for d in dep_names}
        if target == "migrate":
            for infra in ("postgres", "rabbitmq"):
                cond = (deps_dict.get(infra) or {}).get("condition")
                if cond != "service_healthy":
                    problems.append(f"{where}: must wait for {infra} to be healthy")
            if svc.get("restart", "no") not in ("no", "on-failure") and not str(svc.get("restart", "")).startswith(
                "on-failure"
            ):
                problems.append(f"{where}: a one-shot job must not restart always")
        else:
            cond = (deps_dict.get("migrate") or {}).get("condition")
            if cond != "service_completed_successfully":
                problems.append(f"{where}: must wait for migrate to complete successfully")
            if not svc.get("restart") or svc.get("restart") == "no":
                problems.append(f"{where}: long-running service without a restart policy")
        if target in NAMEKO_SERVICES:
            if svc.get("ports"):
                problems.append(f"{where}: published ports prevent `--scale`")
            if str(env.get("OMS_METRICS_PORT")) != str(METRICS_PORT):
                problems.append(f"{where}: OMS_METRICS_PORT must be {METRICS_PORT}")
        if target == "gateway":
            if env.get("OMS_HTTP_HOST") != "0.0.0.0":
                problems.append(f"{where}: OMS_HTTP_HOST must be 0.0.0.0 inside a container")
            ports = [str(p) for p in svc.get("ports") or []]
            if not any(p.endswith(f":{GATEWAY_PORT}") for p in ports):
                problems.append(f"{where}: port {GATEWAY_PORT} not published")

    for infra in ("postgres", "rabbitmq"):
        if infra in services and "healthcheck" not in services[infra]:
            problems.append(f"compose service {infra!r}: no healthcheck")
    problems += card_payment_problems(services)
    problems += carrier_problems(services)

    for var in re.findall(r"\$\{?(OMS_[A-Z0-9_]+)", raw_text):
        if var not in settings:
            problems.append(f"compose: interpolates undocumented {var}")
    return problems


def card_payment_problems(services: dict[str, Any]) -> list[str]:
    """Card payments work between containers: payments reaches the sandbox provider, which listens on every
    interface and delivers its webhooks to the gateway; both sign/verify with the same secret, which comes from
    the environment (never a value committed in the file)."""
    from services.payments.contracts.sandbox import WEBHOOK_PATH

    by_target = {run_target(s.get("command")): n for n, s in services.items() if isinstance(s, dict)}
    names = {t: by_target.get(t) for t in ("payments", "sandbox-provider", "gateway")}
    if None in names.values():
        return []  # reported above as a missing service
    env = {t: env_dict(services[n].get("environment")) for t, n in names.items()}
    problems: list[str] = []
    sandbox, payments, gateway = env["sandbox-provider"], env["payments"], env["gateway"]
    if sandbox.get("OMS_SANDBOX_HOST") != "0.0.0.0":
        problems.append("compose sandbox-provider: OMS_SANDBOX_HOST must be 0.0.0.0 (other containers call it)")
    provider = urlsplit(str(payments.get("OMS_SANDBOX_PROVIDER_URL", "")))
    if (provider.hostname, str(provider.port)) != (names["sandbox-provider"], str(sandbox.get("OMS_SANDBOX_PORT"))):
        problems.append(f"compose payments: OMS_SANDBOX_PROVIDER_URL {provider.geturl()!r} is not the sandbox service")
    hook = urlsplit(str(sandbox.get("OMS_SANDBOX_WEBHOOK_URL", "")))
    gateway_endpoint = (names["gateway"], str(gateway.get("OMS_HTTP_PORT")), WEBHOOK_PATH)
    if (hook.hostname, str(hook.port), hook.path) != gateway_endpoint:
        problems.append(f"compose sandbox-provider: OMS_SANDBOX_WEBHOOK_URL {hook.geturl()!r} is not the gateway's")
    secrets = {t: env[t].get("OMS_SANDBOX_WEBHOOK_SECRET") for t in ("payments", "sandbox-provider")}
    if None in secrets.values() or len(set(secrets.values())) != 1:
        problems.append(f"compose: payments and sandbox-provider need the same OMS_SANDBOX_WEBHOOK_SECRET: {secrets}")
    elif not str(secrets["payments"]).startswith("${OMS_SANDBOX_WEBHOOK_SECRET"):
        problems.append("compose: OMS_SANDBOX_WEBHOOK_SECRET is committed in the file; take it from the environment")
    return problems


def carrier_problems(services: dict[str, Any]) -> list[str]:
    """Shipping works between containers: fulfillment reaches the sandbox carrier, which listens on every
    interface and delivers its tracking webhooks to the gateway; both use the same API key and webhook secret,
    taken from the environment (never a value committed in the file)."""
    from services.fulfillment.contracts.sandbox import WEBHOOK_PATH

    by_target = {run_target(s.get("command")): n for n, s in services.items() if isinstance(s, dict)}
    names = {t: by_target.get(t) for t in ("fulfillment", "sandbox-carrier", "gateway")}
    if None in names.values():
        return []  # reported above as a missing service
    env = {t: env_dict(services[n].get("environment")) for t, n in names.items()}
    problems: list[str] = []
    carrier, fulfillment, gateway = env["sandbox-carrier"], env["fulfillment"], env["gateway"]
    if carrier.get("OMS_SANDBOX_CARRIER_HOST") != "0.0.0.0":
        problems.append("compose sandbox-carrier: OMS_SANDBOX_CARRIER_HOST must be 0.0.0.0 (other containers call it)")
    url = urlsplit(str(fulfillment.get("OMS_CARRIER_URL", "")))
    if (url.hostname, str(url.port)) != (names["sandbox-carrier"], str(carrier.get("OMS_SANDBOX_CARRIER_PORT"))):
        problems.append(f"compose fulfillment: OMS_CARRIER_URL {url.geturl()!r} is not the sandbox carrier")
    hook = urlsplit(str(carrier.get("OMS_SANDBOX_CARRIER_WEBHOOK_URL", "")))
    gateway_endpoint = (names["gateway"], str(gateway.get("OMS_HTTP_PORT")), WEBHOOK_PATH)
    if (hook.hostname, str(hook.port), hook.path) != gateway_endpoint:
        problems.append(f"compose sandbox-carrier: OMS_SANDBOX_CARRIER_WEBHOOK_URL {hook.geturl()!r} is not the "
                        "gateway's")
    for var in ("OMS_CARRIER_API_KEY", "OMS_CARRIER_WEBHOOK_SECRET"):
        values = {t: env[t].get(var) for t in ("fulfillment", "sandbox-carrier")}
        if None in values.values() or len(set(values.values())) != 1:
            problems.append(f"compose: fulfillment and sandbox-carrier need the same {var}: {values}")
        elif not str(values["fulfillment"]).startswith(f"${{{var}"):
            problems.append(f"compose: {var} is committed in the file; take it from the environment")
    return problems


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    data = yaml.safe_load(compose_text)
    assert isinstance(data, dict)
    return data


# --------------------------------------------------------------------------------------------- k8s


def load_k8s_dir(directory: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """({file name: [documents]}, kustomization) for every *.yaml/*.yml in directory."""
    docs: dict[str, list[dict[str, Any]]] = {}
    kustomization: dict[str, Any] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        loaded = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        if path.name in ("kustomization.yaml", "kustomization.yml"):
            kustomization = loaded[0] if loaded else {}
        else:
            docs[path.name] = loaded
    return docs, kustomization


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc.get("kind") in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def containers_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def labels_match(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def k8s_problems(
    docs_by_file: dict[str, list[dict[str, Any]]],
    kustomization: dict[str, Any],
    settings: set[str],
) -> list[str]:
    problems: list[str] = []
    all_docs: list[dict[str, Any]] = []
    for fname, docs in docs_by_file.items():
        for i, doc in enumerate(docs):
            where = f"{fname}[{i}]"
            if not isinstance(doc, dict):
                problems.append(f"{where}: not a mapping")
                continue
            for field in ("apiVersion", "kind"):
                if not doc.get(field):
                    problems.append(f"{where}: no {field}")
            meta = doc.get("metadata") or {}
            if not meta.get("name"):
                problems.append(f"{where}: no metadata.name")
            if doc.get("kind") != "Namespace" and meta.get("namespace") != NAMESPACE:
                problems.append(f"{where}: namespace is {meta.get('namespace')!r}, expected {NAMESPACE!r}")
            all_docs.append(doc)

    def of_kind(kind: str) -> list[dict[str, Any]]:
        return [d for d in all_docs if d.get("kind") == kind]

    def name(doc: dict[str, Any]) -> str:
        return str((doc.get("metadata") or {}).get("name"))

    if not any(name(d) == NAMESPACE for d in of_kind("Namespace")):
        problems.append(f"k8s: no Namespace {NAMESPACE!r}")

    configmaps = {name(d): set((d.get("data") or {}) | (d.get("binaryData") or {})) for d in of_kind("ConfigMap")}
    secrets = {name(d): set((d.get("data") or {}) | (d.get("stringData") or {})) for d in of_kind("Secret")}

    for cm, keys in configmaps.items():
        for key in keys:
            if key.startswith("OMS_") and key not in settings:
                problems.append(f"ConfigMap {cm}: undocumented setting {key}")
    for secret_name, keys in secrets.items():
        for key in keys:
            if key.startswith("OMS_") and key not in settings:
                problems.append(f"Secret {secret_name}: undocumented setting {key}")
    if not any({"OMS_DATABASE_URL", "OMS_AMQP_URL"} <= keys for keys in secrets.values()):
        problems.append("k8s: no Secret holds OMS_DATABASE_URL and OMS_AMQP_URL")
    for cm, keys in configmaps.items():
        for key in ("OMS_DATABASE_URL", "OMS_AMQP_URL"):
            if key in keys:
                problems.append(f"ConfigMap {cm}: {key} carries credentials, belongs in a Secret")

    # References from pod templates to ConfigMaps and Secrets.
    for doc in all_docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        owner = f"{doc.get('kind')} {name(doc)}"
        for c in containers_of(spec):
            cwhere = f"{owner} container {c.get('name')!r}"
            for src in c.get("envFrom") or []:
                if "configMapRef" in src:
                    ref = src["configMapRef"].get("name")
                    if ref not in configmaps:
                        problems.append(f"{cwhere}: envFrom unknown ConfigMap {ref!r}")
                if "secretRef" in src:
                    ref = src["secretRef"].get("name")
                    if ref not in secrets:
                        problems.append(f"{cwhere}: envFrom unknown Secret {ref!r}")
            for var in c.get("env") or []:
                vname = var.get("name", "")
                if vname.startswith("OMS_") and vname not in settings:
                    problems.append(f"{cwhere}: undocumented setting {vname}")
                value_from = var.get("valueFrom") or {}
                for ref_kind, table in (("configMapKeyRef", configmaps), ("secretKeyRef", secrets)):
                    ref = value_from.get(ref_kind)
                    if ref is None:
                        continue
                    if ref.get("name") not in table:
                        problems.append(f"{cwhere}: {ref_kind} unknown name {ref.get('name')!r}")
                    elif ref.get("key") not in table[ref["name"]]:
                        problems.append(f"{cwhere}: {ref_kind} {ref['name']!r} has no key {ref.get('key')!r}")
            for volume in spec.get("volumes") or []:
                if "configMap" in volume and volume["configMap"].get("name") not in configmaps:
                    problems.append(f"{owner}: volume uses unknown ConfigMap {volume['configMap'].get('name')!r}")
                if "secret" in volume and volume["secret"].get("secretName") not in secrets:
                    problems.append(f"{owner}: volume uses unknown Secret {volume['secret'].get('secretName')!r}")

    # Jobs: the migration.
    jobs = [
        d
        for d in of_kind("Job")
        if any(run_target(c.get("args")) == "migrate" for c in containers_of(pod_spec(d) or {}))
    ]
    if not jobs:
        problems.append("k8s: no Job runs `oms migrate`")

    # Deployments.
    hpas = of_kind("HorizontalPodAutoscaler")
    pdbs = of_kind("PodDisruptionBudget")
    deployments = {name(d): d for d in of_kind("Deployment")}
    served: set[str] = set()
    for dname, dep in deployments.items():
        where = f"Deployment {dname}"
        spec = pod_spec(dep) or {}
        pod_labels = ((dep["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not labels_match(dep["spec"].get("selector") or {}, pod_labels):
            problems.append(f"{where}: selector does not match the pod template labels")
        pod_sc = spec.get("securityContext") or {}
        containers = spec.get("containers") or []
        if not containers:
            problems.append(f"{where}: no containers")
        for c in containers_of(spec):
            cwhere = f"{where} container {c.get('name')!r}"
            if c.get("command") not in (None, ["oms"]):
                problems.append(f"{cwhere}: command {c.get('command')!r} overrides the `oms` entrypoint")
            target = run_target(c.get("args"))
            if target is None:
                problems.append(f"{cwhere}: {command_problem(c.get('args'))}")
            elif target != "migrate":
                served.add(target)
            res = c.get("resources") or {}
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if not (res.get(section) or {}).get(resource):
                        problems.append(f"{cwhere}: no resources.{section}.{resource}")
            c_sc = c.get("securityContext") or {}
            if c_sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                problems.append(f"{cwhere}: runAsNonRoot is not true")
            for probe_name in ("livenessProbe", "readinessProbe"):
                probe = c.get(probe_name)
                if not probe:
                    problems.append(f"{cwhere}: no {probe_name}")
                    continue
                http = probe.get("httpGet") or {}
                if target in NAMEKO_SERVICES:
                    expected = ("/healthz", METRICS_PORT)
                elif target == "gateway":
                    expected = ("/api/v1/health", GATEWAY_PORT)
                else:
                    continue
                if (http.get("path"), http.get("port")) != expected:
                    problems.append(
                        f"{cwhere}: {probe_name} is GET {http.get('path')}:{http.get('port')}, "
                        f"expected GET {expected[0]}:{expected[1]}"
                    )
            env_names = {v.get("name") for v in c.get("env") or []}
            env_from_cms = [s["configMapRef"].get("name") for s in c.get("envFrom") or [] if "configMapRef" in s]
            provided = env_names.union(*(configmaps.get(cm, set()) for cm in env_from_cms))
            provided |= set().union(
                *(secrets.get(s["secretRef"].get("name"), set()) for s in c.get("envFrom") or [] if "secretRef" in s)
            )
            for required in ("OMS_DATABASE_URL", "OMS_AMQP_URL"):
                if required not in provided:
                    problems.append(f"{cwhere}: {required} is not provided")
            if target in NAMEKO_SERVICES and "OMS_METRICS_PORT" not in provided:
                problems.append(f"{cwhere}: OMS_METRICS_PORT is not provided")
            if target == "payments":
                from_secret = {
                    v.get("name") for v in c.get("env") or [] if "secretKeyRef" in (v.get("valueFrom") or {})
                }
                secret_refs = [s["secretRef"].get("name") for s in c.get("envFrom") or [] if "secretRef" in s]
                from_secret |= set().union(*(secrets.get(ref, set()) for ref in secret_refs))
                if "OMS_SANDBOX_WEBHOOK_SECRET" not in from_secret:
                    problems.append(f"{cwhere}: OMS_SANDBOX_WEBHOOK_SECRET does not come from a Secret")

        targeting = [
            h
            for h in hpas
            if (h.get("spec") or {}).get("scaleTargetRef", {}).get("kind") == "Deployment"
            and (h.get("spec") or {}).get("scaleTargetRef", {}).get("name") == dname
        ]
        if len(targeting) != 1:
            problems.append(f"{where}: {len(targeting)} HorizontalPodAutoscalers target it, expected 1")
        for h in targeting:
            hs = h.get("spec") or {}
            if not (1 <= int(hs.get("minReplicas", 1)) <= int(hs.get("maxReplicas", 0))):
                problems.append(f"HorizontalPodAutoscaler {name(h)}: minReplicas/maxReplicas inconsistent")
        matching_pdbs = [p for p in pdbs if name(p) == dname]
        if len(matching_pdbs) != 1:
            problems.append(f"{where}: {len(matching_pdbs)} PodDisruptionBudgets named after it, expected 1")
        for p in matching_pdbs:
            if not labels_match((p.get("spec") or {}).get("selector") or {}, pod_labels):
                problems.append(f"PodDisruptionBudget {name(p)}: selector does not select the pods of {dname}")

    for svc in sorted(K8S_SERVICES - served):
        problems.append(f"k8s: no Deployment runs `oms run {svc}`")
    for h in hpas:
        ref = (h.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") != "Deployment" or ref.get("name") not in deployments:
            problems.append(f"HorizontalPodAutoscaler {name(h)}: targets unknown {ref.get('kind')} {ref.get('name')!r}")
    for p in pdbs:
        if name(p) not in deployments:
            problems.append(f"PodDisruptionBudget {name(p)}: no Deployment of that name")

    # Services select pods and name existing ports.
    gateway_deps = [
        d
        for d in deployments.values()
        if any(run_target(c.get("args")) == "gateway" for c in (pod_spec(d) or {}).get("containers") or [])
    ]
    if not any(
        labels_match(
            {"matchLabels": (s.get("spec") or {}).get("selector") or {}},
            ((g["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {},
        )
        for s in of_kind("Service")
        for g in gateway_deps
    ):
        problems.append("k8s: no Service selects the gateway pods")
    for s in of_kind("Service"):
        selector = (s.get("spec") or {}).get("selector") or {}
        selected = [
            d
            for d in deployments.values()
            if labels_match(
                {"matchLabels": selector}, ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
            )
        ]
        if not selected:
            problems.append(f"Service {name(s)}: selects no Deployment's pods")
        for port in (s.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for d in selected:
                known = {
                    p.get(k)
                    for c in (pod_spec(d) or {}).get("containers") or []
                    for p in c.get("ports") or []
                    for k in ("name", "containerPort")
                }
                if target not in known:
                    problems.append(f"Service {name(s)}: targetPort {target!r} is not a port of {name(d)}")

    # Kustomization lists exactly the manifest files.
    resources = kustomization.get("resources") or []
    if len(resources) != len(set(resources)):
        problems.append("kustomization.yaml: duplicate resources")
    if set(resources) != set(docs_by_file):
        problems.append(f"kustomization.yaml: resources {sorted(resources)} != files present {sorted(docs_by_file)}")
    return problems


@pytest.fixture(scope="module")
def k8s() -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    return load_k8s_dir(K8S_DIR)


# --------------------------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)] with comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        instr, _, args = current.partition(" ")
        out.append((instr.upper(), args.strip()))
        current = ""
    if current:
        instr, _, args = current.partition(" ")
        out.append((instr.upper(), args.strip()))
    return out


def dockerfile_problems(text: str) -> list[str]:
    problems: list[str] = []
    instrs = dockerfile_instructions(text)
    froms = [a for i, a in instrs if i == "FROM"]
    if not froms or not froms[0].startswith("python:3.11-slim"):
        problems.append(f"Dockerfile: base image {froms[:1]} is not python:3.11-slim")
    if not any(i == "COPY" and "requirements.lock" in a.split() for i, a in instrs):
        problems.append("Dockerfile: requirements.lock is not copied into the image")
    runs = [a for i, a in instrs if i == "RUN"]
    project_install = re.compile(r"pip install\b[^&;]*-c requirements\.lock\b[^&;]*\s\.(\s|$)")
    if not any(project_install.search(r) for r in runs):
        problems.append("Dockerfile: no `pip install -c requirements.lock .`")
    for r in runs:
        for cmd in re.split(r"&&|;", r):
            if re.search(r"\bpip install\b", cmd) and "-c requirements.lock" not in cmd:
                problems.append(f"Dockerfile: `{cmd.strip()}` installs without the lock file as constraints")
    env_text = " ".join(a for i, a in instrs if i == "ENV")
    if not re.search(r"\bPSYCOPG_WAIT_FUNC[= ]wait_selector\b", env_text):
        problems.append("Dockerfile: ENV PSYCOPG_WAIT_FUNC=wait_selector missing")
    users = [a for i, a in instrs if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("Dockerfile: does not switch to a non-root USER")
    entry = [a for i, a in instrs if i == "ENTRYPOINT"]
    if not entry or _exec_form(entry[-1]) != ["oms"]:
        problems.append(f'Dockerfile: ENTRYPOINT {entry[-1:]} is not ["oms"]')
    cmd = [a for i, a in instrs if i == "CMD"]
    if not cmd or _exec_form(cmd[-1]) != ["run", "gateway"]:
        problems.append(f'Dockerfile: CMD {cmd[-1:]} is not ["run", "gateway"]')
    return problems


def _exec_form(args: str) -> list[str] | None:
    try:
        value = json.loads(args)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


# --------------------------------------------------------------------------------------------- tests


def test_registry_settings_are_known(settings: set[str]) -> None:
    for name in ("OMS_DATABASE_URL", "OMS_AMQP_URL", "OMS_HTTP_HOST", "OMS_HTTP_PORT", "OMS_METRICS_PORT"):
        assert name in settings
    assert {"orders", "payments", "gateway", "sandbox-provider"} <= KNOWN_SERVICES
    assert "sandbox-provider" not in K8S_SERVICES and NAMEKO_SERVICES <= K8S_SERVICES


def test_dockerfile_runs_in_production_mode_with_the_cli() -> None:
    instrs = dockerfile_instructions(DOCKERFILE.read_text())
    assert re.search(r"\bOMS_ENV=production\b", " ".join(a for i, a in instrs if i == "ENV"))
    copied = {a.split()[0].rstrip("/") for i, a in instrs if i == "COPY"}
    assert {"shared", "services", "oms"} <= copied


def test_compose_is_valid(compose: dict[str, Any], compose_text: str, settings: set[str]) -> None:
    assert compose_problems(compose, settings, compose_text) == []


def test_k8s_manifests_are_valid(k8s: tuple[dict[str, Any], dict[str, Any]], settings: set[str]) -> None:
    docs, kustomization = k8s
    assert kustomization, "deploy/k8s/kustomization.yaml missing or empty"
    assert k8s_problems(docs, kustomization, settings) == []


def test_k8s_secret_is_marked_as_example() -> None:
    docs, _ = load_k8s_dir(K8S_DIR)
    secret_files = [f for f, ds in docs.items() if any(d.get("kind") == "Secret" for d in ds)]
    assert secret_files
    for f in secret_files:
        assert "REPLACE" in (K8S_DIR / f).read_text().upper()


def test_dockerfile_is_valid() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_readme_mentions_every_setting(settings: set[str]) -> None:
    text = (ROOT / "deploy" / "README.md").read_text()
    missing = sorted(s for s in settings if s not in text)
    assert missing == []


# Mutations of the real files: each must be reported, so the checks above can fail.


def _orders_deployment(docs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    for ds in docs.values():
        for d in ds:
            if d.get("kind") == "Deployment" and any(
                run_target(c.get("args")) == "orders" for c in (pod_spec(d) or {}).get("containers") or []
            ):
                return d
    raise AssertionError("no orders Deployment")


def _k8s_typo_configmap(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    c = pod_spec(_orders_deployment(docs))["containers"][0]  # type: ignore[index]
    c["envFrom"] = [{"configMapRef": {"name": "oms-confg"}}]


def _k8s_typo_secret_key(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    c = pod_spec(_orders_deployment(docs))["containers"][0]  # type: ignore[index]
    c["env"] = [{"name": "OMS_DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "oms-secrets", "key": "DB"}}}]


def _k8s_no_liveness(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    pod_spec(_orders_deployment(docs))["containers"][0].pop("livenessProbe")  # type: ignore[index]


def _k8s_wrong_probe_port(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    pod_spec(_orders_deployment(docs))["containers"][0]["readinessProbe"] = {  # type: ignore[index]
        "httpGet": {"path": "/healthz", "port": 8080}
    }


def _k8s_no_limits(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    pod_spec(_orders_deployment(docs))["containers"][0]["resources"].pop("limits")  # type: ignore[index]


def _k8s_root(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    spec = pod_spec(_orders_deployment(docs))
    assert spec is not None
    spec["securityContext"] = {}
    spec["containers"][0]["securityContext"] = {"runAsNonRoot": False}


def _k8s_drop_hpa(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    for f in docs:
        docs[f] = [
            d
            for d in docs[f]
            if d.get("kind") != "HorizontalPodAutoscaler" or d["spec"]["scaleTargetRef"]["name"] != "oms-payments"
        ]


def _k8s_hpa_typo(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    for ds in docs.values():
        for d in ds:
            if d.get("kind") == "HorizontalPodAutoscaler" and d["spec"]["scaleTargetRef"]["name"] == "oms-gateway":
                d["spec"]["scaleTargetRef"]["name"] = "oms-gatway"


def _k8s_drop_pdb(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    for f in docs:
        docs[f] = [
            d for d in docs[f] if d.get("kind") != "PodDisruptionBudget" or d["metadata"]["name"] != "oms-orders"
        ]


def _k8s_wrong_namespace(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    _orders_deployment(docs)["metadata"]["namespace"] = "default"


def _k8s_unknown_service(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    pod_spec(_orders_deployment(docs))["containers"][0]["args"] = ["run", "order"]  # type: ignore[index]


def _k8s_undocumented_setting(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    for ds in docs.values():
        for d in ds:
            if d.get("kind") == "ConfigMap":
                d["data"]["OMS_MAX_WORKER"] = "32"


def _k8s_kustomization_missing_file(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    kust["resources"] = [r for r in kust["resources"] if r != "payments.yaml"]


def _k8s_no_name(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    _orders_deployment(docs)["metadata"].pop("name")


def _k8s_service_selector_typo(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    for ds in docs.values():
        for d in ds:
            if d.get("kind") == "Service":
                d["spec"]["selector"] = {"app.kubernetes.io/component": "gatewy"}


def _k8s_no_webhook_secret(docs: dict[str, Any], kust: dict[str, Any]) -> None:
    for ds in docs.values():
        for d in ds:
            for c in (pod_spec(d) or {}).get("containers") or []:
                if run_target(c.get("args")) == "payments":
                    c["env"] = [v for v in c.get("env") or [] if v.get("name") != "OMS_SANDBOX_WEBHOOK_SECRET"]


K8S_MUTATIONS = [
    _k8s_no_webhook_secret,
    _k8s_typo_configmap,
    _k8s_typo_secret_key,
    _k8s_no_liveness,
    _k8s_wrong_probe_port,
    _k8s_no_limits,
    _k8s_root,
    _k8s_drop_hpa,
    _k8s_hpa_typo,
    _k8s_drop_pdb,
    _k8s_wrong_namespace,
    _k8s_unknown_service,
    _k8s_undocumented_setting,
    _k8s_kustomization_missing_file,
    _k8s_no_name,
    _k8s_service_selector_typo,
]


@pytest.mark.parametrize("mutate", K8S_MUTATIONS, ids=lambda f: f.__name__.removeprefix("_k8s_"))
def test_k8s_check_detects(mutate: Any, k8s: tuple[dict[str, Any], dict[str, Any]], settings: set[str]) -> None:
    docs, kust = copy.deepcopy(k8s)
    mutate(docs, kust)
    assert k8s_problems(docs, kust, settings) != []


def _c_container_name(c: dict[str, Any]) -> None:
    c["services"]["orders"]["container_name"] = "oms-orders"


def _c_fixed_port(c: dict[str, Any]) -> None:
    c["services"]["payments"]["ports"] = ["9100:9100"]


def _c_unknown_dependency(c: dict[str, Any]) -> None:
    c["services"]["orders"]["depends_on"] = {"migrations": {"condition": "service_completed_successfully"}}


def _c_not_waiting_for_migrate(c: dict[str, Any]) -> None:
    c["services"]["gateway"]["depends_on"] = {"rabbitmq": {"condition": "service_healthy"}}


def _c_bad_command(c: dict[str, Any]) -> None:
    c["services"]["payments"]["command"] = ["run", "payment"]


def _c_undocumented_env(c: dict[str, Any]) -> None:
    c["services"]["orders"]["environment"]["OMS_DB_URL"] = "postgresql://oms@postgres/oms"


def _c_wrong_db_host(c: dict[str, Any]) -> None:
    c["services"]["orders"]["environment"]["OMS_DATABASE_URL"] = "postgresql://oms:oms@db:5432/oms"


def _c_no_postgres_healthcheck(c: dict[str, Any]) -> None:
    c["services"]["postgres"].pop("healthcheck")


def _c_no_image(c: dict[str, Any]) -> None:
    c["services"]["orders"].pop("image", None)
    c["services"]["orders"].pop("build", None)


def _c_gateway_localhost(c: dict[str, Any]) -> None:
    c["services"]["gateway"]["environment"]["OMS_HTTP_HOST"] = "127.0.0.1"


def _c_sandbox_on_loopback(c: dict[str, Any]) -> None:
    c["services"]["sandbox-provider"]["environment"]["OMS_SANDBOX_HOST"] = "127.0.0.1"


def _c_webhooks_to_itself(c: dict[str, Any]) -> None:
    env = c["services"]["sandbox-provider"]["environment"]
    env["OMS_SANDBOX_WEBHOOK_URL"] = "http://127.0.0.1:8080/api/v1/payments/webhooks/sandbox"


def _c_provider_on_localhost(c: dict[str, Any]) -> None:
    c["services"]["payments"]["environment"]["OMS_SANDBOX_PROVIDER_URL"] = "http://127.0.0.1:8090"


def _c_committed_secret(c: dict[str, Any]) -> None:
    for svc in ("payments", "sandbox-provider"):
        c["services"][svc]["environment"]["OMS_SANDBOX_WEBHOOK_SECRET"] = "whsec_c2VjcmV0"


def _c_different_secrets(c: dict[str, Any]) -> None:
    c["services"]["payments"]["environment"]["OMS_SANDBOX_WEBHOOK_SECRET"] = "${OMS_SANDBOX_WEBHOOK_SECRET_2}"


def _c_carrier_on_loopback(c: dict[str, Any]) -> None:
    c["services"]["sandbox-carrier"]["environment"]["OMS_SANDBOX_CARRIER_HOST"] = "127.0.0.1"


def _c_carrier_on_localhost(c: dict[str, Any]) -> None:
    c["services"]["fulfillment"]["environment"]["OMS_CARRIER_URL"] = "http://127.0.0.1:8091"


def _c_carrier_webhooks_to_payments(c: dict[str, Any]) -> None:
    env = c["services"]["sandbox-carrier"]["environment"]
    env["OMS_SANDBOX_CARRIER_WEBHOOK_URL"] = "http://gateway:8080/api/v1/payments/webhooks/sandbox"


def _c_committed_carrier_secret(c: dict[str, Any]) -> None:
    for svc in ("fulfillment", "sandbox-carrier"):
        c["services"][svc]["environment"]["OMS_CARRIER_WEBHOOK_SECRET"] = "s3cret"


def _c_different_carrier_keys(c: dict[str, Any]) -> None:
    c["services"]["fulfillment"]["environment"]["OMS_CARRIER_API_KEY"] = "${OMS_CARRIER_API_KEY_2}"


COMPOSE_MUTATIONS = [
    _c_carrier_on_loopback,
    _c_carrier_on_localhost,
    _c_carrier_webhooks_to_payments,
    _c_committed_carrier_secret,
    _c_different_carrier_keys,
    _c_sandbox_on_loopback,
    _c_webhooks_to_itself,
    _c_provider_on_localhost,
    _c_committed_secret,
    _c_different_secrets,
    _c_container_name,
    _c_fixed_port,
    _c_unknown_dependency,
    _c_not_waiting_for_migrate,
    _c_bad_command,
    _c_undocumented_env,
    _c_wrong_db_host,
    _c_no_postgres_healthcheck,
    _c_no_image,
    _c_gateway_localhost,
]


@pytest.mark.parametrize("mutate", COMPOSE_MUTATIONS, ids=lambda f: f.__name__.removeprefix("_c_"))
def test_compose_check_detects(mutate: Any, compose: dict[str, Any], settings: set[str]) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert compose_problems(broken, settings) != []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("PSYCOPG_WAIT_FUNC=wait_selector", "PSYCOPG_WAIT_FUNC=select"),
        ("pip install -c requirements.lock .", "pip install ."),
        ("USER 10001:10001", "USER root"),
        ('ENTRYPOINT ["oms"]', 'ENTRYPOINT ["python"]'),
        ("FROM python:3.11-slim", "FROM python:3.12"),
    ],
)
def test_dockerfile_check_detects(old: str, new: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    assert dockerfile_problems(text.replace(old, new)) != []


# External tools, when present (they need no engine or cluster).


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_config_cli() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env = {**os.environ, "OMS_SANDBOX_WEBHOOK_SECRET": "whsec_c2VjcmV0", "OMS_CARRIER_API_KEY": "key",
           "OMS_CARRIER_WEBHOOK_SECRET": "secret", "OMS_SMS_AUTH_TOKEN": "t", "OMS_WHATSAPP_ACCESS_TOKEN": "t",
           "OMS_WHATSAPP_APP_SECRET": "s"}
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr


def test_kustomize_build() -> None:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed")
    result = subprocess.run(["kubectl", "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    docs, _ = load_k8s_dir(K8S_DIR)
    assert len(built) == sum(len(ds) for ds in docs.values())
    assert all(d["kind"] == "Namespace" or d["metadata"]["namespace"] == NAMESPACE for d in built)
