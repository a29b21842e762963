//! deploy/kubernetes: rendered with kustomize (`kubectl kustomize`),
//! validated offline against the schemas of several Kubernetes versions
//! (`kubernetes-validate --strict`, PyPI), then read as YAML: a host-network
//! DaemonSet with the restricted container settings, probes on /readyz and
//! /healthz of the port Prometheus scrapes, a grace period that covers the
//! drain of the ConfigMap's turnd.toml, only known `TURND_*` variables, and
//! that turnd.toml accepted by `turnd check` with the pod's environment.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{require_tool, run_with_timeout};
use yaml_rust2::{Yaml, YamlLoader};

const TOOL_LIMIT: Duration = Duration::from_secs(120);
/// The Kubernetes versions the manifests support (the preStop sleep action
/// needs 1.30).
const VERSIONS: &[&str] = &["1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0"];
/// The image's user (deploy/oci/build.sh).
const IMAGE_UID: i64 = 65532;

/// The kustomizations: the default (external address from the downward
/// API) and the overlay for nodes behind 1:1 NAT.
const DEFAULT: &str = "deploy/kubernetes";
const NAT: &str = "deploy/kubernetes/overlays/nat";

fn render(path: &str) -> Option<String> {
    if !require_tool("kubectl") {
        return None;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let run = run_with_timeout(
        Command::new("kubectl").arg("kustomize").arg(&dir),
        TOOL_LIMIT,
    );
    assert!(run.status.success(), "kubectl kustomize: {}", run.output);
    Some(run.output)
}

fn kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in the rendered manifests"))
}

#[test]
fn manifests_validate_against_supported_kubernetes_versions() {
    for path in [DEFAULT, NAT] {
        let Some(rendered) = render(path) else { return };
        if !require_tool("kubernetes-validate") {
            return;
        }
        validate(path, &rendered);
    }
}

fn validate(path: &str, rendered: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("turnd.yaml");
    fs::write(&file, rendered).unwrap();
    for version in VERSIONS {
        let run = run_with_timeout(
            Command::new("kubernetes-validate")
                .args(["--strict", "--kubernetes-version", version])
                .arg(&file),
            TOOL_LIMIT,
        );
        assert!(
            run.status.success() && !run.output.contains("ERROR"),
            "{path}, Kubernetes {version}:\n{}",
            run.output
        );
        for kind in [
            "namespace",
            "serviceaccount",
            "secret",
            "configmap",
            "daemonset",
        ] {
            assert!(
                run.output.contains(&format!("passed for resource {kind}/")),
                "{path}: {kind} not validated against {version}:\n{}",
                run.output
            );
        }
    }
}

#[test]
fn daemonset_is_host_network_restricted_and_drains() {
    let Some(rendered) = render(DEFAULT) else {
        return;
    };
    let docs = YamlLoader::load_from_str(&rendered).expect("rendered YAML parses");
    let ds = kind(&docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(
        pod["securityContext"]["runAsUser"].as_i64(),
        Some(IMAGE_UID)
    );
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    let caps = |key: &str| -> Vec<String> {
        sc["capabilities"][key]
            .as_vec()
            .map(|v| {
                v.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(caps("drop"), ["ALL"]);
    assert_eq!(caps("add"), ["NET_BIND_SERVICE"]);
    assert!(!c["resources"]["requests"]["cpu"].is_badvalue());
    assert!(!c["resources"]["requests"]["memory"].is_badvalue());

    // Probes ask the port that carries /metrics, which TURND_HTTP_LISTEN
    // puts on the node's address.
    let metrics_port = c["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("metrics"))
        .and_then(|p| p["containerPort"].as_i64())
        .expect("a port named metrics");
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"].as_str(), Some("metrics"));
    }
    let monitor = kind(&docs, "PodMonitor");
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["port"].as_str(),
        Some("metrics")
    );
    kind(&docs, "PodDisruptionBudget");

    // The environment: only variables turnd knows; resolve the downward
    // API and $(VAR) references as the kubelet would, on loopback.
    let mut env: Vec<(String, String)> = Vec::new();
    for var in c["env"].as_vec().unwrap() {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = match var["value"].as_str() {
            Some(v) => v.to_owned(),
            None => {
                assert_eq!(
                    var["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
                    Some("status.hostIP"),
                    "{name}"
                );
                "127.0.0.1".to_owned()
            }
        };
        let value = env
            .iter()
            .fold(value, |v, (n, val)| v.replace(&format!("$({n})"), val));
        env.push((name, value));
    }
    for (name, _) in env.iter().filter(|(n, _)| n.starts_with("TURND_")) {
        assert!(
            turnd::config::ENV_OVERRIDES.iter().any(|o| o.var == name)
                || turnd::config::CLI_VARIABLES.contains(&name.as_str()),
            "{name} is not a variable turnd reads"
        );
    }
    let http = env.iter().find(|(n, _)| n == "TURND_HTTP_LISTEN").unwrap();
    assert_eq!(http.1, format!("127.0.0.1:{metrics_port}"));

    // The ConfigMap's turnd.toml, with the pod's environment and secret
    // files, is what `turnd check` accepts; the grace period covers its
    // drain timeout and the preStop pause.
    let cm = kind(&docs, "ConfigMap");
    let toml = cm["data"]["turnd.toml"]
        .as_str()
        .expect("turnd.toml in the ConfigMap");
    let config = turnd::config::Config::from_toml_str(toml).expect("the ConfigMap's turnd.toml");
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .unwrap_or(0);
    let grace = pod["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("a grace period");
    assert!(
        grace > i64::from(config.drain.timeout_s) + pre_stop,
        "terminationGracePeriodSeconds {grace} must exceed drain.timeout_s {} + preStop {pre_stop}",
        config.drain.timeout_s
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turnd.toml");
    fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnd"));
    cmd.arg("check")
        .arg("--config")
        .arg(&path)
        .env_remove("TURND_CONFIG");
    for (name, value) in &env {
        let value = if name == "TURND_REST_SECRET_FILES" {
            // The Secret's files, here with a value (the shipped ones are
            // empty on purpose).
            let mut files = Vec::new();
            for (i, mounted) in value.split(',').enumerate() {
                let file = dir.path().join(format!("secret{i}"));
                fs::write(&file, format!("test-secret-{i}")).unwrap();
                assert!(mounted.starts_with("/etc/turnd/rest/"), "{mounted}");
                files.push(file.to_str().unwrap().to_owned());
            }
            files.join(",")
        } else {
            value.clone()
        };
        cmd.env(name, value);
    }
    let run = run_with_timeout(&mut cmd, TOOL_LIMIT);
    assert!(run.status.success(), "turnd check: {}", run.output);
    assert!(
        run.output.contains("environment TURND_RELAY_EXTERNAL"),
        "{}",
        run.output
    );
}

#[test]
fn nat_overlay_reads_the_external_address_from_the_node_annotation() {
    let Some(rendered) = render(NAT) else { return };
    let docs = YamlLoader::load_from_str(&rendered).expect("rendered YAML parses");
    let pod = &kind(&docs, "DaemonSet")["spec"]["template"]["spec"];
    let env_names = |c: &Yaml| -> Vec<String> {
        c["env"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let turnd = &pod["containers"][0];
    let names = env_names(turnd);
    assert!(
        names.iter().any(|n| n == "TURND_RELAY_EXTERNAL_FILE"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "TURND_RELAY_EXTERNAL"),
        "{names:?}"
    );
    // turnd still has no API token: only the init container mounts one.
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    let init = &pod["initContainers"][0];
    let mounts = |c: &Yaml| -> Vec<String> {
        c["volumeMounts"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(mounts(init).iter().any(|m| m == "init-token"));
    assert!(!mounts(turnd).iter().any(|m| m == "init-token"));
    assert!(mounts(turnd).iter().any(|m| m == "run"));
    assert_eq!(
        init["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    let role = kind(&docs, "ClusterRole");
    assert_eq!(role["rules"][0]["resources"][0].as_str(), Some("nodes"));
    assert_eq!(role["rules"][0]["verbs"].as_vec().map(Vec::len), Some(1));
}
