#!/usr/bin/env bash
# Checks what can be checked of deploy/ without a cluster, a container runtime or a
# running Prometheus:
#   - deploy/prometheus: `promtool check rules`, `promtool test rules` (rules_test.yml),
#     `promtool check config` (prometheus.yml, which loads rules.yml);
#   - deploy/grafana: every dashboard is valid JSON, and every panel query parses as
#     PromQL (dashboard variables replaced by plain values, then `promtool check rules`);
#   - deploy/kubernetes: every manifest parses as YAML and validates against the
#     Kubernetes 1.30 schemas (kubernetes-validate, strict); names and labels that must
#     agree across files do (selectors, ports, Secret keys, ConfigMap name), and the embedded
#     gateway.yaml binds the admin listener where probes and Prometheus can reach it.
# That the embedded gateway.yaml is a valid drawbridge configuration is checked by
# `cargo test --test integration deploy` (tests/integration/deploy.rs).
#
# Installs what is missing, idempotently, under target/tools/ (nothing system-wide, except
# python3-venv if Debian's Python lacks it): promtool, extracted from Debian's
# `prometheus` package, and a venv with kubernetes-validate and PyYAML. Run as root on
# Debian for the apt steps.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
tools_dir="$repo_root/target/tools"
work="$(mktemp -d)"
chmod 755 "$work"   # apt-get download's sandbox user (_apt) writes the .deb here
trap 'rm -rf "$work"' EXIT

# --- promtool ------------------------------------------------------------------------
# Debian's `prometheus` package ships /usr/bin/promtool beside the server. Installing
# the package would also create a system user, start a service and pull ~90 MB of web
# assets; promtool alone is one Go binary linked only against libc, so it is taken out
# of the .deb instead.
install_promtool() {
  local tmp="$work/promtool"
  mkdir -p "$tmp"
  chmod 755 "$tmp"
  echo "check-deploy: fetching promtool from Debian's prometheus package" >&2
  if ! (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); then
    apt-get update -qq
    (cd "$tmp" && apt-get download -qq prometheus >/dev/null)
  fi
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
  install -D -m 0755 "$tmp/root/usr/bin/promtool" "$tools_dir/promtool"
}

if command -v promtool >/dev/null 2>&1; then
  promtool="$(command -v promtool)"
else
  promtool="$tools_dir/promtool"
  if [[ ! -x "$promtool" ]]; then
    command -v apt-get >/dev/null 2>&1 || {
      echo "check-deploy: promtool is missing and apt-get is not available; install Prometheus' promtool" >&2
      exit 1
    }
    install_promtool
  fi
fi
echo "check-deploy: using $("$promtool" --version 2>&1 | head -n1) ($promtool)"

# --- kubernetes-validate and PyYAML ----------------------------------------------------
# kubernetes-validate (PyPI, pinned) validates manifests offline against the Kubernetes
# OpenAPI schemas it bundles. It depends on PyYAML, so its venv's Python also runs the
# YAML checks below.
k8s_validate_version=1.37.0
k8s_venv="$tools_dir/k8s-venv"
if [[ "$("$k8s_venv/bin/kubernetes-validate" --version 2>/dev/null)" != "$k8s_validate_version" ]]; then
  echo "check-deploy: installing kubernetes-validate $k8s_validate_version into target/tools/k8s-venv" >&2
  rm -rf "$k8s_venv"
  if ! python3 -m venv "$k8s_venv" 2>/dev/null; then
    # Debian's own python3 needs python3-venv for `-m venv`.
    echo "check-deploy: installing python3-venv with apt-get" >&2
    rm -rf "$k8s_venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$k8s_venv"
  fi
  "$k8s_venv/bin/pip" install -q "kubernetes-validate==$k8s_validate_version"
fi
python="$k8s_venv/bin/python"

# --- Prometheus ------------------------------------------------------------------------
echo "== promtool check rules deploy/prometheus/rules.yml"
"$promtool" check rules deploy/prometheus/rules.yml
echo "== promtool test rules deploy/prometheus/rules_test.yml"
"$promtool" test rules deploy/prometheus/rules_test.yml
echo "== promtool check config deploy/prometheus/prometheus.yml"
"$promtool" check config deploy/prometheus/prometheus.yml

# --- Grafana ---------------------------------------------------------------------------
for dashboard in deploy/grafana/*.json; do
  echo "== $dashboard"
  python3 -m json.tool "$dashboard" >/dev/null
  # Each panel query becomes a recording rule, so promtool parses it as PromQL.
  "$python" - "$dashboard" "$work/dashboard_rules.yml" <<'PY'
import json, re, sys, yaml

dashboard = json.load(open(sys.argv[1]))
assert dashboard.get("title"), "dashboard has no title"
assert dashboard.get("uid"), "dashboard has no uid"

def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))

# Grafana variables become ordinary values: `$route` is used as a regex, intervals as
# durations.
values = {"route": ".*", "__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
def substitute(expr):
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), expr)

rules, ids = [], set()
for p in panels(dashboard.get("panels", [])):
    if p.get("type") == "row":
        continue
    assert p.get("id") not in ids, f"duplicate panel id {p.get('id')}"
    ids.add(p.get("id"))
    for t in p.get("targets", []):
        expr = substitute(t["expr"])
        assert "$" not in expr, f"panel {p['title']!r}: unknown variable in {t['expr']!r}"
        rules.append({"record": f"dashboard:panel_{p['id']}_{t.get('refId', 'A')}", "expr": expr})
for v in dashboard.get("templating", {}).get("list", []):
    if v.get("type") == "query":
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
        assert m, f"variable {v['name']}: expected label_values(<selector>, <label>)"
        rules.append({"record": f"dashboard:variable_{v['name']}", "expr": m.group(1)})
assert rules, "no panel queries"
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"))
print(f"{len(rules)} queries")
PY
  "$promtool" check rules "$work/dashboard_rules.yml" >/dev/null
done

# --- metric names ------------------------------------------------------------------------
# Every drawbridge metric an alert or a panel uses is one the code registers. Which labels
# exist is checked against a running gateway by the end-to-end suite.
echo "== metric names in deploy/ are registered in src/"
"$python" - deploy/prometheus/rules.yml deploy/grafana/*.json <<'PY'
import pathlib, re, sys

source = "\n".join(p.read_text() for p in pathlib.Path("src").rglob("*.rs"))
registered = set(re.findall(r'"(drawbridge_[a-z_]+)"', source))
unknown = {}
for path in sys.argv[1:]:
    for name in re.findall(r"\bdrawbridge_[a-z_]+", pathlib.Path(path).read_text()):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if base not in registered:
            unknown.setdefault(base, set()).add(path)
assert not unknown, f"metrics not registered in src/: {unknown}"
print(f"{len(registered)} registered metric names; every name used is one of them")
PY

# --- Kubernetes ------------------------------------------------------------------------
echo "== deploy/kubernetes"
"$python" - deploy/kubernetes <<'PY'
import pathlib, sys, yaml

root = pathlib.Path(sys.argv[1])
objects = {}
for path in sorted(root.glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        for key in ("apiVersion", "kind"):
            assert key in doc, f"{path}: a document has no {key}"
        if doc["kind"] == "Kustomization":
            objects["Kustomization"] = (path, doc)
            continue
        name = doc.get("metadata", {}).get("name")
        assert name, f"{path}: {doc['kind']} has no metadata.name"
        objects[(doc["kind"], name)] = (path, doc)
    print(f"parsed {path}")

def get(kind, name):
    assert (kind, name) in objects, f"no {kind} {name} in {root}"
    return objects[(kind, name)][1]

# kustomization.yaml lists files that exist, and leaves the example Secret out.
_, kustomization = objects["Kustomization"]
for resource in kustomization["resources"]:
    assert (root / resource).is_file(), f"kustomization.yaml: {resource} does not exist"
assert "secret.example.yaml" not in kustomization["resources"], \
    "the example Secret must not be applied over the real one"

deployment = get("Deployment", "drawbridge")
pod = deployment["spec"]["template"]
pod_labels = pod["metadata"]["labels"]
def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())
assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
container = pod["spec"]["containers"][0]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
assert ports == {"http": 8080, "admin": 9090}, ports

# Probes on the admin port.
assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}

# Non-root, read-only root file system.
assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
assert container["securityContext"]["readOnlyRootFilesystem"] is True
assert container["securityContext"]["allowPrivilegeEscalation"] is False

# Resources.
for kind in ("requests", "limits"):
    for resource in ("cpu", "memory"):
        assert resource in container["resources"][kind], f"resources.{kind}.{resource}"

# No preStop hook: the gateway drains itself (shutdown_drain) before its listeners stop.
assert "preStop" not in container.get("lifecycle", {}), "drawbridge drains by itself"

# Secrets come from the Secrets the example describes, with the same keys.
secret = get("Secret", "drawbridge-secrets")
env_from_secret = {
    e["name"]: e["valueFrom"]["secretKeyRef"]
    for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})
}
assert set(env_from_secret) == {"DRAWBRIDGE_EXCHANGE_SECRET"}, env_from_secret
for ref in env_from_secret.values():
    assert ref["name"] == "drawbridge-secrets" and ref["key"] in secret["stringData"], ref
session_secret = get("Secret", "drawbridge-session-keys")
for example in (secret, session_secret):
    assert all("REPLACE-ME" in v for v in example["stringData"].values()), \
        "secret.example.yaml must hold placeholders only"

# The ConfigMap is mounted where the container's arguments look for gateway.yaml.
volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
config_map = get("ConfigMap", volumes["config"]["configMap"]["name"])
assert f"{mounts['config']}/gateway.yaml" in container["args"], container["args"]

# The kubelet's SIGKILL must come after the drain and the grace, with room to spare.
def seconds(text, default):
    text = str(text or default)
    return int(text[:-1]) if text.endswith("s") and not text.endswith("ms") else 3600
gateway = yaml.safe_load(config_map["data"]["gateway.yaml"])
drain = seconds(gateway.get("shutdown_drain"), "5s")
grace = seconds(gateway.get("shutdown_grace"), "10s")
assert pod["spec"]["terminationGracePeriodSeconds"] >= drain + grace + 5, (drain, grace)
gateway = yaml.safe_load(config_map["data"]["gateway.yaml"])
assert gateway["admin"]["listen"] == "0.0.0.0:9090", \
    "admin.listen must bind all interfaces for probes and Prometheus"
assert gateway["listen"].endswith(":8080")

# Session keys are files of the session-keys Secret, mounted as a whole volume (a subPath
# mount is never updated by the kubelet, so --watch would not see a rotation), and the
# Deployment runs with --watch.
key_volume = volumes["session-keys"]
assert key_volume["secret"]["secretName"] == "drawbridge-session-keys", key_volume
key_mount = next(m for m in container["volumeMounts"] if m["name"] == "session-keys")
assert "subPath" not in key_mount, "a subPath mount is not updated when the Secret changes"
assert "--watch" in container["args"], "without --watch a rotated key needs a restart"
for key in gateway["sessions"]["keys"]:
    path = key.get("secret_file", "")
    assert path.startswith(key_mount["mountPath"] + "/"), key
    assert path.rsplit("/", 1)[1] in session_secret["stringData"], f"{path}: no such key in the Secret"
assert oct(key_volume["secret"]["defaultMode"]) in ("0o440", "0o400"), "session keys readable by others"
for name in env_from_secret:
    assert "${" + name + "}" in config_map["data"]["gateway.yaml"], f"{name} is not used"

# Services select the gateway pods; the public one does not expose the admin port.
public = get("Service", "drawbridge")
admin = get("Service", "drawbridge-admin")
for service in (public, admin):
    assert selects(service["spec"]["selector"], pod_labels), service["metadata"]["name"]
assert [p["targetPort"] for p in public["spec"]["ports"]] == ["http"]
assert [p["targetPort"] for p in admin["spec"]["ports"]] == ["admin"]

# The ServiceMonitor finds the admin Service and its port.
monitor = get("ServiceMonitor", "drawbridge")
assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
assert selects(monitor["spec"]["selector"]["matchLabels"], admin["metadata"]["labels"])
assert not selects(monitor["spec"]["selector"]["matchLabels"], public["metadata"]["labels"])
endpoint = monitor["spec"]["endpoints"][0]
assert endpoint["port"] in [p["name"] for p in admin["spec"]["ports"]]
assert endpoint["path"] == "/metrics"

# The autoscaler and the disruption budget point at the Deployment.
hpa = get("HorizontalPodAutoscaler", "drawbridge")
assert hpa["apiVersion"] == "autoscaling/v2"
assert hpa["spec"]["scaleTargetRef"]["name"] == "drawbridge"
assert hpa["spec"]["minReplicas"] >= 2
assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
pdb = get("PodDisruptionBudget", "drawbridge")
assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "the PDB would block every drain"
# The NetworkPolicy covers the gateway pods, lets MCP traffic in on `http` and the admin
# port in only from a selected namespace.
policy = get("NetworkPolicy", "drawbridge")
assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
assert policy["spec"]["policyTypes"] == ["Ingress"]
for rule in policy["spec"]["ingress"]:
    ports = [p["port"] for p in rule["ports"]]
    assert ports in (["http"], ["admin"]), ports
    if ports == ["admin"]:
        assert rule.get("from"), "the admin port must not be open to every source"

# The PrometheusRule is rules.yml for the Operator (scripts/gen-prometheusrule.py).
rule = get("PrometheusRule", "drawbridge")
assert rule["apiVersion"] == "monitoring.coreos.com/v1"
for name in kustomization["resources"]:
    assert (root / name).is_file()
assert "prometheusrule.yaml" in kustomization["resources"]
assert "networkpolicy.yaml" in kustomization["resources"]
print("manifests agree")
PY
echo "== deploy/kubernetes/prometheusrule.yaml is deploy/prometheus/rules.yml"
"$python" scripts/gen-prometheusrule.py --check

# Against Kubernetes 1.30. --strict refuses unknown fields. There is no schema for the
# ServiceMonitor and the PrometheusRule (CRDs): kubernetes-validate warns and skips them.
echo "== kubernetes-validate --strict -k 1.30.0"
manifests=()
for f in deploy/kubernetes/*.yaml; do
  [[ "$(basename "$f")" == kustomization.yaml ]] || manifests+=("$f")
done
"$k8s_venv/bin/kubernetes-validate" --strict --quiet -k 1.30.0 "${manifests[@]}"

echo "check-deploy: ok"
