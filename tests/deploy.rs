//! The Kubernetes base (`tools/deploy/kubernetes`) renders with `kubectl kustomize`, and what it
//! renders is what a node expects: the settings file and the container's flags resolve to a
//! fleet whose members are the StatefulSet's stable pod names under the headless Service, each
//! pod's own id among them, on the port the Services and probes use; the data dir is the
//! volume's mount; the disruption budget keeps a replica of every shard. The Prometheus alert
//! rules pass `promtool check rules` (their metric names are checked against a real scrape in
//! tests/metrics.rs).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use clap::Parser;
use common::*;
use serde_json::Value;
use tierdex::config::{NodeConfig, PeerSource, Settings};

/// The rendered manifests as JSON, by kind (then name).
fn render() -> BTreeMap<(String, String), Value> {
    let rendered = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo_root().join("tools/deploy/kubernetes"))
        .output()
        .expect("kubectl is on the machine image");
    assert!(
        rendered.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    // PyYAML (installed by tools/test.sh) turns the YAML stream into JSON.
    let mut python = Command::new(python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(&rendered.stdout)
        .unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(output.status.success());
    let documents: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    documents
        .into_iter()
        .map(|document| {
            let kind = document["kind"].as_str().unwrap().to_string();
            let name = document["metadata"]["name"].as_str().unwrap().to_string();
            ((kind, name), document)
        })
        .collect()
}

fn one<'a>(rendered: &'a BTreeMap<(String, String), Value>, kind: &str) -> &'a Value {
    let found: Vec<&Value> = rendered
        .iter()
        .filter(|((found, _), _)| found == kind)
        .map(|(_, document)| document)
        .collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

#[derive(Parser)]
struct Serve {
    #[arg(long)]
    config: std::path::PathBuf,
    #[command(flatten)]
    settings: Settings,
}

#[test]
fn the_kubernetes_base_renders_to_what_a_fleet_member_expects() {
    let rendered = render();
    let set = one(&rendered, "StatefulSet");
    let pdb = one(&rendered, "PodDisruptionBudget");
    let config_map = one(&rendered, "ConfigMap");
    let services: Vec<&Value> = rendered
        .iter()
        .filter(|((kind, _), _)| kind == "Service")
        .map(|(_, document)| document)
        .collect();
    assert_eq!(services.len(), 2);
    let peers_service = services
        .iter()
        .find(|service| service["spec"]["clusterIP"] == "None")
        .expect("a headless Service for peers");
    let client_service = services
        .iter()
        .find(|service| service["spec"]["clusterIP"] != "None")
        .expect("a Service for clients");
    assert_eq!(peers_service["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(
        set["spec"]["serviceName"],
        peers_service["metadata"]["name"]
    );

    // Pods, selectors and the disruption budget agree on the labels.
    let pod_labels = &set["spec"]["template"]["metadata"]["labels"];
    for selector in [
        &set["spec"]["selector"]["matchLabels"],
        &peers_service["spec"]["selector"],
        &client_service["spec"]["selector"],
        &pdb["spec"]["selector"]["matchLabels"],
    ] {
        for (key, value) in selector.as_object().unwrap() {
            assert_eq!(&pod_labels[key], value, "selector {key}");
        }
    }
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    // The member the first pod is: its flags and settings file, resolved as `tierdex serve`.
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let pod_name = format!("{}-0", set["metadata"]["name"].as_str().unwrap());
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap().replace("$(POD_NAME)", &pod_name))
        .collect();
    assert_eq!(args[0], "serve");
    let env_names: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|env| env["name"].as_str().unwrap())
        .collect();
    assert!(env_names.contains(&"POD_NAME"));
    let serve =
        Serve::try_parse_from(std::iter::once("serve".to_string()).chain(args[1..].to_vec()))
            .unwrap();
    // The settings file is the ConfigMap's, mounted where --config points.
    let mounts = container["volumeMounts"].as_array().unwrap();
    let config_mount = mounts
        .iter()
        .find(|mount| {
            serve
                .config
                .starts_with(mount["mountPath"].as_str().unwrap())
        })
        .expect("--config lies on a mounted volume");
    let volume = set["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|volume| volume["name"] == config_mount["name"])
        .unwrap();
    assert_eq!(
        volume["configMap"]["name"], config_map["metadata"]["name"],
        "the generated ConfigMap's hashed name"
    );
    let file_name = serve.config.file_name().unwrap().to_str().unwrap();
    let toml = config_map["data"][file_name].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file_name);
    std::fs::write(&path, toml).unwrap();
    let settings = Settings::from_toml_file(&path)
        .unwrap()
        .overridden_by(serve.settings);
    let config = NodeConfig::resolve(settings, "rendered manifests").unwrap();

    let fleet = config.fleet.expect("a fleet member");
    let replicas = set["spec"]["replicas"].as_u64().unwrap() as usize;
    let port = config.listen.port();
    let peers_name = peers_service["metadata"]["name"].as_str().unwrap();
    let expected: Vec<String> = (0..replicas)
        .map(|i| {
            format!(
                "{}-{i}.{peers_name}:{port}",
                set["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(fleet.peers, PeerSource::Static(expected.clone()));
    assert_eq!(
        fleet.advertise, expected[0],
        "a pod's id is its stable name"
    );
    assert!(fleet.replicas >= 2 && fleet.replicas <= replicas);

    // One port everywhere: what the node listens on, the container exposes, the Services
    // target and the readiness probe asks (grpc.health.v1, the node's overall status).
    let grpc_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|declared| declared["name"] == "grpc")
        .unwrap();
    assert_eq!(grpc_port["containerPort"], u64::from(port));
    for service in [peers_service, client_service] {
        let target = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|declared| declared["name"] == "grpc")
            .unwrap();
        assert_eq!(target["targetPort"], "grpc");
    }
    assert_eq!(
        container["readinessProbe"]["grpc"]["port"],
        u64::from(port),
        "readiness on the node's health"
    );
    assert_eq!(container["readinessProbe"]["grpc"]["service"], "");
    let metrics_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|declared| declared["name"] == "metrics")
        .unwrap();
    assert_eq!(
        Some(metrics_port["containerPort"].as_u64().unwrap() as u16),
        config.metrics_listen.map(|address| address.port())
    );

    // The data dir is the per-pod volume.
    let claim = &set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"];
    let data_mount = mounts
        .iter()
        .find(|mount| &mount["name"] == claim)
        .expect("the claim is mounted");
    assert_eq!(
        data_mount["mountPath"].as_str().unwrap(),
        config.data_dir.to_str().unwrap()
    );
}

#[test]
fn promtool_accepts_every_alert_rule() {
    let rules = repo_root().join("tools/deploy/prometheus/alerts.yml");
    // Absent promtool fails the test: tools/test.sh installs it (Debian package `prometheus`).
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap_or_else(|err| {
            panic!("promtool: {err} (tools/test.sh installs it: the Debian package `prometheus`)")
        });
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    // It read every rule the file declares, not an empty group.
    let declared = std::fs::read_to_string(&rules)
        .unwrap()
        .lines()
        .filter(|line| line.trim_start().starts_with("- alert:"))
        .count();
    assert!(declared >= 10, "{declared} alerts");
    assert!(
        printed.contains(&format!("SUCCESS: {declared} rules found")),
        "{printed}"
    );
}
