//! deploy/kubernetes: the gateway.yaml inside the ConfigMap is a configuration the
//! binary accepts, given exactly the environment the Deployment gives the container.
//! (The manifests' YAML and their cross-references are checked by
//! scripts/check-deploy.sh.)

use std::path::Path;
use std::process::{Command, Output};

use serde::Deserialize;
use serde_yaml::Value;

use crate::harness::drawbridge_bin;

fn manifest(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `data.gateway.yaml` of configmap.yaml.
fn configmap_gateway_yaml() -> String {
    manifest("configmap.yaml")["data"]["gateway.yaml"]
        .as_str()
        .expect("configmap.yaml has data.gateway.yaml")
        .to_string()
}

/// The container's environment as deployment.yaml declares it: plain values as written,
/// values from the Secret filled in with dummies that are valid for their purpose.
fn deployment_environment() -> Vec<(String, String)> {
    let deployment = manifest("deployment.yaml");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .expect("the drawbridge container has an env list");
    env.iter()
        .map(|var| {
            let name = var["name"].as_str().expect("env name").to_string();
            let value = if let Some(value) = var["value"].as_str() {
                value.to_string()
            } else {
                assert!(
                    !var["valueFrom"]["secretKeyRef"].is_null(),
                    "{name}: expected a value or a secretKeyRef"
                );
                secret_stand_in(&name)
            };
            (name, value)
        })
        .collect()
}

fn secret_stand_in(name: &str) -> String {
    match name {
        "DRAWBRIDGE_EXCHANGE_SECRET" => "a-client-secret-for-the-test".to_string(),
        other => panic!("deployment.yaml takes {other} from a Secret: give this test a stand-in"),
    }
}

/// A real session key, made the way the Secret's instructions say.
fn keygen() -> String {
    let out = Command::new(drawbridge_bin())
        .arg("keygen")
        .output()
        .unwrap();
    assert!(out.status.success(), "drawbridge keygen failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The configmap's gateway.yaml with the session-keys volume the Deployment mounts
/// stood in for by a directory holding a fresh key for every key of the example Secret.
fn with_mounted_session_keys(dir: &Path) -> String {
    let deployment = manifest("deployment.yaml");
    let mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_sequence()
        .expect("volume mounts");
    let mount = mounts
        .iter()
        .find(|m| m["name"] == "session-keys")
        .and_then(|m| m["mountPath"].as_str())
        .expect("the session-keys volume is mounted");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/secret.example.yaml"),
    )
    .unwrap();
    // Files as the kubelet writes them: the volume's defaultMode.
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .expect("volumes");
    let mode = volumes
        .iter()
        .find(|v| v["name"] == "session-keys")
        .and_then(|v| v["secret"]["defaultMode"].as_u64())
        .expect("the session-keys volume has a defaultMode") as u32;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let secret = Value::deserialize(doc).unwrap();
        if secret["metadata"]["name"] == "drawbridge-session-keys" {
            for (key, _) in secret["stringData"].as_mapping().expect("stringData") {
                let file = dir.join(key.as_str().unwrap());
                std::fs::write(&file, keygen()).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    }
    configmap_gateway_yaml().replace(mount, &dir.display().to_string())
}

/// `drawbridge validate` on `yaml` with nothing in the environment but `env`.
fn validate(yaml: &str, env: &[(String, String)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, yaml).unwrap();
    Command::new(drawbridge_bin())
        .arg("validate")
        .arg(&file)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

#[test]
fn configmap_gateway_yaml_validates_with_the_deployment_environment() {
    let keys = tempfile::tempdir().unwrap();
    let out = validate(
        &with_mounted_session_keys(keys.path()),
        &deployment_environment(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    // No warnings either (no public route, session keys configured), but that the
    // cluster's Service names do not resolve on this machine.
    let unexpected: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("does not resolve from here"))
        .collect();
    assert!(unexpected.is_empty(), "unexpected warnings: {unexpected:?}");
}

#[test]
fn configmap_gateway_yaml_needs_every_secret_the_deployment_provides() {
    let keys = tempfile::tempdir().unwrap();
    let yaml = with_mounted_session_keys(keys.path());
    let env = deployment_environment();
    let deployment = manifest("deployment.yaml");
    let from_secrets: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .filter(|var| !var["valueFrom"]["secretKeyRef"].is_null())
        .filter_map(|var| var["name"].as_str())
        .collect();
    assert!(!from_secrets.is_empty());
    for missing in from_secrets {
        let without: Vec<_> = env.iter().filter(|(k, _)| k != missing).cloned().collect();
        assert_eq!(
            without.len() + 1,
            env.len(),
            "deployment.yaml does not set {missing}"
        );
        let out = validate(&yaml, &without);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("environment variable `{missing}` is not set")),
            "{stderr}"
        );
    }
    // And the session key files: without the Secret's volume the file is missing.
    let out = validate(&configmap_gateway_yaml(), &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("secret_file"), "{stderr}");
}

#[test]
fn configmap_admin_listener_is_reachable_from_outside_the_pod() {
    // Probes and Prometheus connect to the pod IP; the default 127.0.0.1:9090 would fail
    // every readiness check.
    let gateway: Value = serde_yaml::from_str(&configmap_gateway_yaml()).unwrap();
    assert_eq!(gateway["admin"]["listen"].as_str(), Some("0.0.0.0:9090"));
}
