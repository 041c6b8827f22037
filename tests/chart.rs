//! Tests of the Helm chart in `charts/y360-avatar-operator`: `helm lint`, the objects that
//! `helm template` renders, the values schema, and the chart's RBAC rules on a real control
//! plane, where the operator runs in-process with the chart's service-account identity.
//!
//! helm comes from `Y360_HELM` when it is set, and from `hack/helm/build.sh` otherwise, which
//! builds it on first use (about four minutes on two cores) and then reuses the cached binary.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::watch;

use y360_avatar_operator::controller::{self, Hooks, RunOptions, Shutdown};
use y360_avatar_operator::crd::UserAvatar;
use y360_avatar_operator::leader::{self, LeaseSettings};
use y360_avatar_operator::metrics::Metrics;
use y360_testkit::cluster::LocalCluster;
use y360_testkit::directory::{DirectoryStandIn, StandInConfig};

mod support;

use support::{
    ORG_ID, TOKEN, WAIT, client_from_kubeconfig, example_image, ready_is, test_settings,
};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/y360-avatar-operator");
const GENERATED_CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/crds.yaml");
const CHART_CRDS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/y360-avatar-operator/files/crds.yaml"
);
const PRODUCTION_EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/y360-avatar-operator/examples/values-production.yaml"
);
const HELM_ENV: &str = "Y360_HELM";
const HELM_BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hack/helm/build.sh");

const RELEASE: &str = "y360";
const RELEASE_NAMESPACE: &str = "y360-system";
/// Resource name prefix of release `y360`: the release name plus the chart name.
const FULLNAME: &str = "y360-y360-avatar-operator";
const GROUP: &str = "y360-avatar-operator.dev";
const KEEP_ANNOTATION: &str = "helm.sh/resource-policy";

const USER_ID: &str = "1130000000000007";

// ---------------------------------------------------------------------------------------
// helm

/// Returns the helm binary: `Y360_HELM`, or the path that `hack/helm/build.sh` prints.
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(path) = std::env::var_os(HELM_ENV) {
            return PathBuf::from(path);
        }
        let output = Command::new("bash")
            .arg(HELM_BUILD_SCRIPT)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|error| panic!("failed to run {HELM_BUILD_SCRIPT}: {error}"));
        assert!(
            output.status.success(),
            "{HELM_BUILD_SCRIPT} failed with {}; set {HELM_ENV} to a helm v3 binary to skip it",
            output.status
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let path = stdout.lines().map(str::trim).rfind(|line| !line.is_empty());
        let path = path.unwrap_or_else(|| panic!("{HELM_BUILD_SCRIPT} printed no path"));
        PathBuf::from(path)
    })
}

/// Runs helm with `args` and returns stdout on success and stdout plus stderr on failure.
fn run_helm(args: &[&str]) -> Result<String, String> {
    let output = Command::new(helm())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("failed to run {}: {error}", helm().display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!("{stdout}{stderr}"))
    }
}

/// Renders the chart as release `y360` in `y360-system` with extra helm arguments, such as
/// `--set-json`, and returns the YAML text.
fn template_text(extra: &[&str]) -> Result<String, String> {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", RELEASE_NAMESPACE];
    args.extend_from_slice(extra);
    run_helm(&args)
}

/// Renders the chart and parses every document. Panics when helm fails.
fn render(extra: &[&str]) -> Vec<Value> {
    let text = template_text(extra)
        .unwrap_or_else(|error| panic!("helm template {extra:?} failed:\n{error}"));
    parse_documents(&text)
}

/// Renders the chart with invalid values and returns helm's error output.
fn render_error(extra: &[&str]) -> String {
    match template_text(extra) {
        Ok(_) => panic!("helm template {extra:?} succeeded, but the values are invalid"),
        Err(error) => error,
    }
}

fn parse_documents(text: &str) -> Vec<Value> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|error| panic!("invalid YAML: {error}"));
    documents.into_iter().filter(|doc| !doc.is_null()).collect()
}

const NAMESPACED: &[&str] = &["--set-json", r#"watchNamespaces=["a","b"]"#];

// ---------------------------------------------------------------------------------------
// Rendered objects

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace(object: &Value) -> Option<&str> {
    object["metadata"]["namespace"].as_str()
}

fn count_kinds(objects: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for object in objects {
        *counts.entry(kind(object).to_owned()).or_insert(0) += 1;
    }
    counts
}

fn of_kind<'a>(objects: &'a [Value], expected_kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| kind(o) == expected_kind)
        .collect()
}

fn only<'a>(objects: &'a [Value], expected_kind: &str) -> &'a Value {
    let matching = of_kind(objects, expected_kind);
    assert_eq!(matching.len(), 1, "expected exactly one {expected_kind}");
    matching[0]
}

fn container(objects: &[Value]) -> &Value {
    let deployment = only(objects, "Deployment");
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("Deployment has containers");
    assert_eq!(containers.len(), 1, "the Deployment runs one container");
    &containers[0]
}

fn args(objects: &[Value]) -> Vec<String> {
    let args = container(objects)["args"]
        .as_array()
        .expect("container has args");
    args.iter()
        .map(|arg| arg.as_str().expect("args are strings").to_owned())
        .collect()
}

/// Returns the rules of a Role or ClusterRole as (apiGroups, resources, resourceNames, verbs)
/// tuples, sorted, so that tests compare them regardless of order.
fn rules(role: &Value) -> BTreeSet<(String, String, String, String)> {
    let join = |value: &Value| {
        let mut items: Vec<&str> = value
            .as_array()
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        items.sort_unstable();
        items.join(",")
    };
    let rules = role["rules"].as_array().expect("role has rules");
    rules
        .iter()
        .map(|rule| {
            (
                join(&rule["apiGroups"]),
                join(&rule["resources"]),
                join(&rule["resourceNames"]),
                join(&rule["verbs"]),
            )
        })
        .collect()
}

fn rule(groups: &str, resources: &str, verbs: &str) -> (String, String, String, String) {
    named_rule(groups, resources, "", verbs)
}

fn named_rule(
    groups: &str,
    resources: &str,
    names: &str,
    verbs: &str,
) -> (String, String, String, String) {
    (groups.into(), resources.into(), names.into(), verbs.into())
}

/// Returns the rules the operator needs in each watched scope, in the form of [`rules`].
fn expected_operator_rules() -> BTreeSet<(String, String, String, String)> {
    BTreeSet::from([
        rule(GROUP, "directoryconnections,useravatars", "get,list,watch"),
        rule(
            GROUP,
            "directoryconnections/status,useravatars/status",
            "get,patch",
        ),
        rule("", "configmaps", "get,list,watch"),
        rule("", "secrets", "get"),
        rule("events.k8s.io", "events", "create,patch"),
    ])
}

/// Replaces every number by its f64 value, because `toYaml` writes `1.0` as `1`.
fn normalize_numbers(value: Value) -> Value {
    match value {
        Value::Number(number) => json!(number.as_f64().expect("finite number")),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key, normalize_numbers(value)))
                .collect(),
        ),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------
// helm lint and helm template

#[test]
fn helm_lint_passes() {
    let cases: [(&str, &[&str]); 4] = [
        ("default values", &[]),
        ("watchNamespaces [a, b]", NAMESPACED),
        (
            "leader election with two replicas",
            &[
                "--set",
                "leaderElection.enabled=true",
                "--set",
                "replicas=2",
            ],
        ),
        (
            "optional objects enabled",
            &[
                "--set",
                "serviceMonitor.enabled=true",
                "--set",
                "podDisruptionBudget.enabled=true",
                "--set",
                "networkPolicy.enabled=true",
                "--set-json",
                r#"networkPolicy.apiServer.cidrs=["10.96.0.1/32"]"#,
                "--set-json",
                r#"networkPolicy.directoryApi.cidrs=["192.0.2.0/24"]"#,
            ],
        ),
    ];
    for (case, extra) in cases {
        let mut args = vec!["lint", "--strict", CHART, "--namespace", RELEASE_NAMESPACE];
        args.extend_from_slice(extra);
        let result = run_helm(&args);
        assert!(
            result.is_ok(),
            "helm lint failed for {case}:\n{}",
            result.unwrap_err()
        );
    }
}

#[test]
fn production_example_renders() {
    let objects = render(&["-f", PRODUCTION_EXAMPLE]);
    let counts = count_kinds(&objects);
    for kind in [
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceMonitor",
    ] {
        assert_eq!(
            counts.get(kind),
            Some(&1),
            "{kind} in the production example"
        );
    }
    // One Role for the watched namespace and one for the Lease.
    assert_eq!(counts.get("Role"), Some(&2));
    assert_eq!(counts.get("ClusterRole"), None);
    let args = args(&objects);
    assert!(args.contains(&"--leader-election".to_owned()), "{args:?}");
    assert!(
        args.contains(&"--namespace=y360-avatars".to_owned()),
        "{args:?}"
    );

    let mut lint = vec!["lint", "--strict", CHART, "--namespace", RELEASE_NAMESPACE];
    lint.extend(["-f", PRODUCTION_EXAMPLE]);
    let result = run_helm(&lint);
    assert!(result.is_ok(), "helm lint failed:\n{}", result.unwrap_err());
}

/// Values that contain Kubernetes objects or free-form settings. The README describes each
/// as a whole instead of listing its fields.
const FREE_FORM_VALUES: &[&str] = &[
    "podSecurityContext",
    "securityContext",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "networkPolicy.dns.podSelector",
];

/// Collects the dotted path of every value in `values`, descending into maps except
/// [`FREE_FORM_VALUES`] and empty maps.
fn value_paths(prefix: &str, values: &Value, paths: &mut Vec<String>) {
    match values.as_object() {
        Some(map) if !map.is_empty() && !FREE_FORM_VALUES.contains(&prefix) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                value_paths(&path, value, paths);
            }
        }
        _ => paths.push(prefix.to_owned()),
    }
}

#[test]
fn readme_lists_every_value() {
    let values = std::fs::read_to_string(format!("{CHART}/values.yaml")).expect("values.yaml");
    let values: Value = serde_saphyr::from_str(&values).expect("values.yaml parses");
    let readme = std::fs::read_to_string(format!("{CHART}/README.md")).expect("README.md");
    let mut paths = Vec::new();
    value_paths("", &values, &mut paths);
    assert!(paths.len() > 40, "only {} values found", paths.len());
    let missing: Vec<_> = paths
        .iter()
        .filter(|path| !readme.contains(&format!("| `{path}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "charts/y360-avatar-operator/README.md has no row for {missing:?}"
    );
}

#[test]
fn default_render_is_cluster_wide() {
    let objects = render(&[]);
    let expected = BTreeMap::from([
        ("ClusterRole".to_owned(), 1),
        ("ClusterRoleBinding".to_owned(), 1),
        ("CustomResourceDefinition".to_owned(), 2),
        ("Deployment".to_owned(), 1),
        ("Service".to_owned(), 1),
        ("ServiceAccount".to_owned(), 1),
    ]);
    assert_eq!(count_kinds(&objects), expected);

    let cluster_scoped = [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
    ];
    for object in &objects {
        if !cluster_scoped.contains(&kind(object)) {
            let object_name = format!("{} {}", kind(object), name(object));
            assert_eq!(namespace(object), Some(RELEASE_NAMESPACE), "{object_name}");
        }
    }

    let role = only(&objects, "ClusterRole");
    assert_eq!(rules(role), expected_operator_rules());
    let binding = only(&objects, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], FULLNAME);
    let subject = json!({
        "kind": "ServiceAccount",
        "name": FULLNAME,
        "namespace": RELEASE_NAMESPACE,
    });
    assert_eq!(binding["subjects"], json!([subject]));

    let args = args(&objects);
    let namespace_flags: Vec<_> = args
        .iter()
        .filter(|a| a.starts_with("--namespace"))
        .collect();
    assert!(namespace_flags.is_empty(), "{namespace_flags:?}");
    let deployment = only(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], FULLNAME);
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
}

#[test]
fn namespaced_render_uses_roles() {
    let objects = render(NAMESPACED);
    let counts = count_kinds(&objects);
    assert_eq!(counts.get("ClusterRole"), None);
    assert_eq!(counts.get("ClusterRoleBinding"), None);
    assert_eq!(counts.get("Role"), Some(&2));
    assert_eq!(counts.get("RoleBinding"), Some(&2));

    let role_namespaces: BTreeSet<_> = of_kind(&objects, "Role")
        .into_iter()
        .map(|role| namespace(role).unwrap_or_default())
        .collect();
    assert_eq!(role_namespaces, BTreeSet::from(["a", "b"]));
    for role in of_kind(&objects, "Role") {
        assert_eq!(
            rules(role),
            expected_operator_rules(),
            "Role in {:?}",
            namespace(role)
        );
    }
    for binding in of_kind(&objects, "RoleBinding") {
        let location = format!("RoleBinding in {:?}", namespace(binding));
        assert_eq!(binding["roleRef"]["kind"], "Role", "{location}");
        assert_eq!(binding["roleRef"]["name"], FULLNAME, "{location}");
        assert_eq!(
            binding["subjects"][0]["namespace"], RELEASE_NAMESPACE,
            "{location}"
        );
        assert_eq!(binding["subjects"][0]["name"], FULLNAME, "{location}");
    }

    let args = args(&objects);
    assert!(args.contains(&"--namespace=a,b".to_owned()), "{args:?}");
}

#[test]
fn secrets_are_get_only() {
    for (case, extra) in [("cluster-wide", &[][..]), ("namespaced", NAMESPACED)] {
        let objects = render(extra);
        let roles = objects
            .iter()
            .filter(|o| kind(o) == "Role" || kind(o) == "ClusterRole");
        for role in roles {
            let secret_verbs: Vec<_> = rules(role)
                .into_iter()
                .filter(|(_, resources, _, _)| resources.split(',').any(|r| r == "secrets"))
                .map(|(_, _, _, verbs)| verbs)
                .collect();
            assert_eq!(
                secret_verbs,
                ["get"],
                "{case}: {} {}",
                kind(role),
                name(role)
            );
        }
    }
}

#[test]
fn pod_is_hardened() {
    let objects = render(&[]);
    let deployment = only(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true);
    assert_eq!(pod_security["runAsUser"], 65532);
    assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");

    let security = &container(&objects)["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");

    let resources = &container(&objects)["resources"];
    for field in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            let value = &resources[field][resource];
            assert!(value.is_string(), "resources.{field}.{resource} is {value}");
        }
    }
    let env_names: Vec<_> = container(&objects)["env"]
        .as_array()
        .expect("container has env")
        .iter()
        .map(|var| var["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(env_names, ["POD_NAME", "POD_NAMESPACE"]);
}

#[test]
fn probes_use_admin_port() {
    for (port, extra) in [(8080, &[][..]), (9440, &["--set", "admin.port=9440"][..])] {
        let objects = render(extra);
        let container = container(&objects);
        let ports = container["ports"].as_array().expect("container has ports");
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0]["name"], "admin");
        assert_eq!(ports[0]["containerPort"], port);
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
        assert_eq!(container["livenessProbe"]["httpGet"]["port"], "admin");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
        let address = format!("--admin-address=0.0.0.0:{port}");
        assert!(args(&objects).contains(&address), "{:?}", args(&objects));

        let service = only(&objects, "Service");
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "admin");
        assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    }

    let objects = render(&["--set", "admin.bindAddress=::"]);
    let args = args(&objects);
    assert!(
        args.contains(&"--admin-address=[::]:8080".to_owned()),
        "{args:?}"
    );
}

#[test]
fn values_map_to_flags() {
    let default_args = args(&render(&[]));
    let expected_defaults = [
        "--admin-address=0.0.0.0:8080",
        "--concurrency=8",
        "--max-image-bytes=1048576",
        "--max-redirects=5",
        "--connect-timeout-seconds=10",
        "--read-timeout-seconds=30",
        "--request-timeout-seconds=60",
        "--upload-rate-limit=0",
        "--upload-burst=1",
        "--token-recheck-seconds=30",
        "--log-format=text",
        "--log=info",
        "--shutdown-timeout-seconds=20",
    ];
    assert_eq!(default_args, expected_defaults);

    let objects = render(&[
        "--set-json",
        r#"watchNamespaces=["team-a"]"#,
        "--set-json",
        r#"labelSelector="shard in (a,b)""#,
        "--set",
        "concurrency=3",
        "--set",
        "maxImageBytes=2097152",
        "--set",
        "allowHttp=true",
        "--set-json",
        r#"allowUrlNetworks=["10.20.0.0/16","fd00::/8"]"#,
        "--set",
        "maxRedirects=0",
        "--set",
        "connectTimeoutSeconds=4",
        "--set",
        "readTimeoutSeconds=7",
        "--set",
        "requestTimeoutSeconds=20",
        "--set-json",
        "uploadRateLimit=2.5",
        "--set",
        "uploadBurst=4",
        "--set",
        "tokenRecheckSeconds=90",
        "--set",
        "logFormat=json",
        "--set-json",
        r#"logFilter="info,y360_avatar_operator=debug""#,
        "--set",
        "leaderElection.enabled=true",
        "--set",
        "leaderElection.leaseName=shard-a",
        "--set",
        "leaderElection.leaseDurationSeconds=30",
        "--set",
        "leaderElection.leaseGraceSeconds=10",
        "--set",
        "shutdownTimeoutSeconds=25",
    ]);
    let expected = [
        "--admin-address=0.0.0.0:8080",
        "--namespace=team-a",
        "--label-selector=shard in (a,b)",
        "--concurrency=3",
        "--max-image-bytes=2097152",
        "--allow-http",
        "--allow-url-network=10.20.0.0/16,fd00::/8",
        "--max-redirects=0",
        "--connect-timeout-seconds=4",
        "--read-timeout-seconds=7",
        "--request-timeout-seconds=20",
        "--upload-rate-limit=2.5",
        "--upload-burst=4",
        "--token-recheck-seconds=90",
        "--log-format=json",
        "--log=info,y360_avatar_operator=debug",
        "--shutdown-timeout-seconds=25",
        "--leader-election",
        "--leader-election-namespace=y360-system",
        "--leader-election-lease-name=shard-a",
        "--lease-duration-seconds=30",
        "--lease-grace-seconds=10",
    ];
    assert_eq!(args(&objects), expected);
}

/// Helm reads numbers from values files and `--set-json` as float64, which Go templates print
/// in exponent form above one million unless the chart converts them.
#[test]
fn large_numbers_render_as_integers() {
    let objects = render(&[
        "--set-json",
        "requestTimeoutSeconds=3600000",
        "--set-json",
        "maxImageBytes=10485760",
        "--set-json",
        "terminationGracePeriodSeconds=2000000",
        "--set-json",
        "podDisruptionBudget={\"enabled\":true,\"maxUnavailable\":null,\"minAvailable\":\"50%\"}",
    ]);
    let args = args(&objects);
    let timeout = "--request-timeout-seconds=3600000".to_owned();
    assert!(args.contains(&timeout), "{args:?}");
    assert!(
        args.contains(&"--max-image-bytes=10485760".to_owned()),
        "{args:?}"
    );
    let pod = &only(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 2000000);
    let budget = only(&objects, "PodDisruptionBudget");
    assert_eq!(budget["spec"]["minAvailable"], "50%");
}

#[test]
fn chart_crds_match_generated() {
    let generated = std::fs::read_to_string(GENERATED_CRDS).expect("crds/crds.yaml is readable");
    let copy =
        std::fs::read_to_string(CHART_CRDS).expect("the chart's files/crds.yaml is readable");
    assert!(
        copy == generated,
        "charts/y360-avatar-operator/files/crds.yaml differs from crds/crds.yaml; run `make crds`"
    );

    let objects = render(&[]);
    let mut rendered: Vec<Value> = of_kind(&objects, "CustomResourceDefinition")
        .into_iter()
        .cloned()
        .collect();
    for crd in &mut rendered {
        let annotations = crd["metadata"]["annotations"]
            .as_object_mut()
            .expect("rendered CRDs have annotations");
        let keep = annotations.remove(KEEP_ANNOTATION);
        assert_eq!(keep, Some(json!("keep")), "CRD {}", name(crd));
        if annotations.is_empty() {
            crd["metadata"]
                .as_object_mut()
                .expect("metadata is a map")
                .remove("annotations");
        }
    }
    let rendered: Vec<Value> = rendered.into_iter().map(normalize_numbers).collect();
    let expected: Vec<Value> = parse_documents(&generated)
        .into_iter()
        .map(normalize_numbers)
        .collect();
    assert_eq!(rendered.len(), expected.len());
    for (rendered, expected) in rendered.iter().zip(&expected) {
        assert!(
            rendered == expected,
            "rendered CRD {} differs from crds/crds.yaml",
            name(expected)
        );
    }
}

#[test]
fn crd_values_switch_crds() {
    let objects = render(&["--set", "installCRDs=false"]);
    assert!(of_kind(&objects, "CustomResourceDefinition").is_empty());

    let objects = render(&["--set", "keepCRDs=false"]);
    let crds = of_kind(&objects, "CustomResourceDefinition");
    assert_eq!(crds.len(), 2);
    for crd in crds {
        let keep = &crd["metadata"]["annotations"][KEEP_ANNOTATION];
        assert!(
            keep.is_null(),
            "CRD {} has {KEEP_ANNOTATION}={keep}",
            name(crd)
        );
    }
}

#[test]
fn invalid_values_fail_with_message() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--set", "logFormat=xml"],
            &["/logFormat", "'text', 'json'"],
        ),
        (
            &["--set", "replicas=2"],
            &["replicas is 2", "leaderElection.enabled=true"],
        ),
        (&["--set", "concurrency=0"], &["/concurrency", "minimum"]),
        (
            &["--set", "maxImageBytes=0"],
            &["/maxImageBytes", "minimum"],
        ),
        (&["--set", "admin.port=70000"], &["/admin/port", "maximum"]),
        (&["--set", "concurrncy=4"], &["concurrncy", "not allowed"]),
        (
            &["--set-json", r#"watchNamespaces=["Team_A"]"#],
            &["/watchNamespaces/0"],
        ),
        (
            &["--set", "networkPolicy.enabled=true"],
            &["networkPolicy.apiServer.cidrs"],
        ),
        (
            &[
                "--set",
                "podDisruptionBudget.enabled=true",
                "--set",
                "podDisruptionBudget.minAvailable=1",
            ],
            &["podDisruptionBudget.minAvailable", "maxUnavailable"],
        ),
        (
            &[
                "--set",
                "networkPolicy.enabled=true",
                "--set-json",
                r#"networkPolicy.apiServer.cidrs=["10.96.0.1/32"]"#,
            ],
            &["networkPolicy.directoryApi.cidrs"],
        ),
        (
            &["--set", "shutdownTimeoutSeconds=30"],
            &[
                "shutdownTimeoutSeconds (30)",
                "terminationGracePeriodSeconds (30)",
            ],
        ),
        (
            &[
                "--set",
                "leaderElection.enabled=true",
                "--set",
                "leaderElection.leaseGraceSeconds=15",
            ],
            &[
                "leaderElection.leaseGraceSeconds (15)",
                "leaseDurationSeconds (15)",
            ],
        ),
    ];
    for (values, expected_parts) in cases {
        let error = render_error(values);
        for part in expected_parts.iter() {
            assert!(
                error.contains(part),
                "error for {values:?} does not mention {part:?}:\n{error}"
            );
        }
    }
}

#[test]
fn leader_election_renders_lease_role() {
    let objects = render(&[
        "--set",
        "leaderElection.enabled=true",
        "--set",
        "replicas=2",
    ]);
    let deployment = only(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");

    let role = only(&objects, "Role");
    assert_eq!(name(role), format!("{FULLNAME}-leader-election"));
    assert_eq!(namespace(role), Some(RELEASE_NAMESPACE));
    let expected = BTreeSet::from([
        rule("coordination.k8s.io", "leases", "create"),
        named_rule(
            "coordination.k8s.io",
            "leases",
            "y360-avatar-operator",
            "get,patch",
        ),
    ]);
    assert_eq!(rules(role), expected);
    let binding = only(&objects, "RoleBinding");
    assert_eq!(binding["roleRef"]["name"], name(role));
    assert_eq!(namespace(binding), Some(RELEASE_NAMESPACE));

    let objects = render(&[
        "--set",
        "leaderElection.enabled=true",
        "--set",
        "leaderElection.namespace=coordination",
    ]);
    assert_eq!(namespace(only(&objects, "Role")), Some("coordination"));
    let expected_flag = "--leader-election-namespace=coordination".to_owned();
    assert!(args(&objects).contains(&expected_flag));

    let objects = render(&[]);
    assert!(of_kind(&objects, "Role").is_empty());
    let args = args(&objects);
    assert!(
        !args.iter().any(|arg| arg.starts_with("--leader-election")),
        "{args:?}"
    );
}

#[test]
fn optional_objects_render() {
    let objects = render(&[
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "podDisruptionBudget.enabled=true",
        "--set",
        "networkPolicy.enabled=true",
        "--set-json",
        r#"networkPolicy.apiServer.cidrs=["10.96.0.1/32","192.0.2.10/32"]"#,
        "--set-json",
        r#"networkPolicy.directoryApi.cidrs=["198.51.100.0/24"]"#,
    ]);

    let monitor = only(&objects, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");

    let budget = only(&objects, "PodDisruptionBudget");
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    assert!(budget["spec"]["minAvailable"].is_null());

    let policy = only(&objects, "NetworkPolicy");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    let ingress = &policy["spec"]["ingress"];
    assert_eq!(
        ingress,
        &json!([{ "ports": [{ "port": "admin", "protocol": "TCP" }] }])
    );
    let egress = policy["spec"]["egress"].as_array().expect("egress rules");
    assert_eq!(egress.len(), 3);
    let api_server = json!({
        "to": [
            { "ipBlock": { "cidr": "10.96.0.1/32" } },
            { "ipBlock": { "cidr": "192.0.2.10/32" } },
        ],
        "ports": [
            { "port": 443, "protocol": "TCP" },
            { "port": 6443, "protocol": "TCP" },
        ],
    });
    assert_eq!(egress[0], api_server);
    let dns = json!({
        "to": [{
            "namespaceSelector": {
                "matchLabels": { "kubernetes.io/metadata.name": "kube-system" },
            },
            "podSelector": { "matchLabels": { "k8s-app": "kube-dns" } },
        }],
        "ports": [
            { "port": 53, "protocol": "UDP" },
            { "port": 53, "protocol": "TCP" },
        ],
    });
    assert_eq!(egress[1], dns);
    let directory = json!({
        "to": [{ "ipBlock": { "cidr": "198.51.100.0/24" } }],
        "ports": [{ "port": 443, "protocol": "TCP" }],
    });
    assert_eq!(egress[2], directory);

    let objects = render(&[]);
    for kind in ["ServiceMonitor", "PodDisruptionBudget", "NetworkPolicy"] {
        assert!(
            of_kind(&objects, kind).is_empty(),
            "{kind} rendered by default"
        );
    }
}

// ---------------------------------------------------------------------------------------
// RBAC on a real control plane

/// One installed release of the chart: its namespace and service-account identity, and a
/// kubeconfig file that authenticates as that service account.
struct Release {
    namespace: String,
    service_account: String,
    kubeconfig: PathBuf,
}

impl Release {
    fn user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// Temporary directory removed on drop. The control plane's own directory is private to it.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("y360-chart-test-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("failed to create a scratch directory");
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn kubectl(cluster: &LocalCluster, args: &[&str]) -> String {
    let output = cluster.kubectl().args(args).output().expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl {args:?} failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Renders the chart's ServiceAccount, RBAC and CRD templates and applies them with
/// `kubectl apply -f -`, as `helm template ... | kubectl apply -f -` does. The Deployment is
/// left out, because the local control plane runs no pods.
fn install_rbac(cluster: &LocalCluster, release: &str, namespace: &str, values: &[&str]) {
    let mut args = vec![
        "template",
        release,
        CHART,
        "--namespace",
        namespace,
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/rbac.yaml",
    ];
    let renders_crds = !values.contains(&"installCRDs=false");
    if renders_crds {
        args.extend(["--show-only", "templates/crds.yaml"]);
    }
    args.extend_from_slice(values);
    let manifest = run_helm(&args).unwrap_or_else(|error| panic!("helm template failed: {error}"));

    kubectl_apply(cluster, &manifest, &[]);
}

/// Pipes `manifest` into `kubectl apply -f -` with extra flags, such as `--dry-run=server`.
fn kubectl_apply(cluster: &LocalCluster, manifest: &str, flags: &[&str]) {
    let mut apply = cluster
        .kubectl()
        .args(["apply", "-f", "-"])
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut stdin = apply.stdin.take().expect("kubectl stdin");
    stdin
        .write_all(manifest.as_bytes())
        .expect("write the manifest to kubectl");
    drop(stdin);
    let output = apply.wait_with_output().expect("kubectl apply finishes");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kubectl apply {flags:?} failed: {stderr}"
    );
}

/// Sends every object of a full render to the API server with `--dry-run=server`, so that
/// kube-apiserver v1.36 validates each field of the Deployment, Service, NetworkPolicy and
/// the rest against its schemas. The ServiceMonitor is left out, because the Prometheus
/// Operator CRDs are not installed.
fn validate_full_render(cluster: &LocalCluster, namespace: &str, values: &[&str]) {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", namespace];
    args.extend_from_slice(values);
    args.extend(["--set", "serviceMonitor.enabled=false"]);
    let manifest = run_helm(&args).unwrap_or_else(|error| panic!("helm template failed: {error}"));
    kubectl_apply(cluster, &manifest, &["--dry-run=server"]);
}

/// Writes a kubeconfig whose client certificate carries the service account's user name and
/// its groups. Kubernetes adds `system:authenticated` to every certificate user, so the two
/// groups in the certificate complete the three groups of a real service-account token.
fn service_account_kubeconfig(
    cluster: &LocalCluster,
    scratch: &ScratchDir,
    namespace: &str,
    service_account: &str,
) -> Release {
    let user = format!("system:serviceaccount:{namespace}:{service_account}");
    let namespace_group = format!("system:serviceaccounts:{namespace}");
    let groups = ["system:serviceaccounts", namespace_group.as_str()];
    let yaml = cluster
        .kubeconfig_for(&user, &groups)
        .expect("kubeconfig for the service account");
    let path = scratch.0.join(format!("{namespace}.kubeconfig"));
    std::fs::write(&path, yaml).expect("write the service-account kubeconfig");
    Release {
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
        kubeconfig: path,
    }
}

/// Runs `kubectl auth can-i` as the release's service account. `request` is the verb, the
/// resource and any flags, such as `["patch", "useravatars.x", "--subresource=status"]`.
fn can_i(cluster: &LocalCluster, release: &Release, request: &[&str], namespace: &str) -> bool {
    let mut command = cluster.kubectl_with(&release.kubeconfig);
    command.args(["auth", "can-i"]).args(request);
    if namespace == "*" {
        command.arg("--all-namespaces");
    } else {
        command.args(["--namespace", namespace]);
    }
    let output = command.output().expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl auth can-i {request:?} printed {other:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn assert_allowed(cluster: &LocalCluster, release: &Release, checks: &[(&[&str], &str)]) {
    for (request, namespace) in checks {
        assert!(
            can_i(cluster, release, request, namespace),
            "{} is denied {request:?} in namespace {namespace}, which the operator needs",
            release.user()
        );
    }
}

fn assert_denied(cluster: &LocalCluster, release: &Release, checks: &[(&[&str], &str)]) {
    for (request, namespace) in checks {
        assert!(
            !can_i(cluster, release, request, namespace),
            "{} is allowed {request:?} in namespace {namespace}, which the chart should not grant",
            release.user()
        );
    }
}

const AVATARS: &str = "useravatars.y360-avatar-operator.dev";
const CONNECTIONS: &str = "directoryconnections.y360-avatar-operator.dev";
const EVENTS: &str = "events.events.k8s.io";
const LEASES: &str = "leases.coordination.k8s.io";

/// Returns every request the operator makes in a watched namespace. The namespace `*` means
/// across all namespaces.
fn operator_requests(namespace: &str) -> Vec<(&'static [&'static str], &str)> {
    vec![
        (&["get", AVATARS], namespace),
        (&["list", AVATARS], namespace),
        (&["watch", AVATARS], namespace),
        (&["get", CONNECTIONS], namespace),
        (&["list", CONNECTIONS], namespace),
        (&["watch", CONNECTIONS], namespace),
        (&["patch", AVATARS, "--subresource=status"], namespace),
        (&["patch", CONNECTIONS, "--subresource=status"], namespace),
        (&["get", "configmaps"], namespace),
        (&["list", "configmaps"], namespace),
        (&["watch", "configmaps"], namespace),
        (&["get", "secrets"], namespace),
        (&["create", EVENTS], namespace),
        (&["patch", EVENTS], namespace),
    ]
}

/// Returns requests outside the chart's rules, in a watched namespace.
fn forbidden_requests(namespace: &str) -> Vec<(&'static [&'static str], &str)> {
    vec![
        (&["list", "secrets"], namespace),
        (&["watch", "secrets"], namespace),
        (&["create", "secrets"], namespace),
        (&["update", "secrets"], namespace),
        (&["create", "configmaps"], namespace),
        (&["update", "configmaps"], namespace),
        (&["patch", "configmaps"], namespace),
        (&["delete", "configmaps"], namespace),
        (&["create", AVATARS], namespace),
        (&["update", AVATARS], namespace),
        (&["patch", AVATARS], namespace),
        (&["delete", AVATARS], namespace),
        (&["delete", CONNECTIONS], namespace),
        (&["update", AVATARS, "--subresource=status"], namespace),
        (&["create", "events"], namespace),
        (&["delete", EVENTS], namespace),
        (&["create", "pods"], namespace),
        (&["get", "pods"], namespace),
        (
            &["create", "rolebindings.rbac.authorization.k8s.io"],
            namespace,
        ),
        (&["get", LEASES], namespace),
        (&["create", LEASES], namespace),
        (&["list", "namespaces"], "*"),
        (
            &["create", "customresourcedefinitions.apiextensions.k8s.io"],
            "*",
        ),
        (&["impersonate", "serviceaccounts"], namespace),
    ]
}

async fn create_namespace(admin: &Client, name: &str) {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<Namespace> = Api::all(admin.clone());
    api.create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|error| panic!("failed to create namespace {name}: {error}"));
}

async fn apply_custom(admin: &Client, namespace: &str, plural: &str, object: Value) {
    let kind = object["kind"]
        .as_str()
        .expect("object has a kind")
        .to_owned();
    let name = object["metadata"]["name"]
        .as_str()
        .expect("object has a name")
        .to_owned();
    let gvk = GroupVersionKind::gvk(GROUP, "v1alpha1", &kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), namespace, &resource);
    let params = PatchParams::apply("y360-chart-test").force();
    api.patch(&name, &params, &Patch::Apply(&object))
        .await
        .unwrap_or_else(|error| panic!("failed to apply {kind} {namespace}/{name}: {error}"));
}

/// Creates, as the admin, the objects of one upload in `namespace`: a token Secret, a
/// DirectoryConnection to the stand-in, a ConfigMap with a PNG and a UserAvatar named `alice`.
async fn create_upload_objects(admin: &Client, namespace: &str, directory: &DirectoryStandIn) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("directory-token".into()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([("token".to_owned(), TOKEN.to_owned())])),
        ..Default::default()
    };
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the token Secret");

    let connection = json!({
        "apiVersion": "y360-avatar-operator.dev/v1alpha1",
        "kind": "DirectoryConnection",
        "metadata": { "name": "default" },
        "spec": {
            "orgId": ORG_ID,
            "apiUrl": directory.base_url(),
            "tokenSecretRef": { "name": "directory-token", "key": "token" },
        },
    });
    apply_custom(admin, namespace, "directoryconnections", connection).await;

    let png = example_image("alice.png");
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("portraits".into()),
            ..Default::default()
        },
        binary_data: Some(BTreeMap::from([("alice.png".to_owned(), ByteString(png))])),
        ..Default::default()
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), namespace);
    config_maps
        .create(&PostParams::default(), &config_map)
        .await
        .expect("create the image ConfigMap");

    let avatar = json!({
        "apiVersion": "y360-avatar-operator.dev/v1alpha1",
        "kind": "UserAvatar",
        "metadata": { "name": "alice" },
        "spec": {
            "userId": USER_ID,
            "source": { "configMap": { "name": "portraits", "key": "alice.png" } },
        },
    });
    apply_custom(admin, namespace, "useravatars", avatar).await;
}

/// Polls UserAvatar `alice` until its Ready condition is True with reason UpToDate, and fails
/// with the last status seen after `WAIT`.
async fn wait_until_uploaded(admin: &Client, namespace: &str) -> UserAvatar {
    let api: Api<UserAvatar> = Api::namespaced(admin.clone(), namespace);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let avatar = api.get("alice").await.expect("get UserAvatar alice");
        if ready_is(&avatar, "True", "UpToDate") {
            return avatar;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "UserAvatar {namespace}/alice never became Ready=True (UpToDate) with the chart's \
                 RBAC; last status: {:#?}",
                avatar.status
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the operator in-process as the release's service account until UserAvatar `alice` in
/// `upload_namespace` is uploaded. It watches `namespaces` (all when empty), and with `lease`
/// it starts only after acquiring that Lease. Checks that the stand-in received one upload,
/// that the operator published an Event and that it holds the Lease, then stops it.
async fn upload_as(
    admin: &Client,
    release: &Release,
    namespaces: Vec<String>,
    upload_namespace: &str,
    lease: Option<LeaseSettings>,
) {
    let directory = DirectoryStandIn::start(StandInConfig::new(ORG_ID, TOKEN))
        .await
        .expect("start the Directory API stand-in");
    create_upload_objects(admin, upload_namespace, &directory).await;

    let kubeconfig = std::fs::read_to_string(&release.kubeconfig).expect("read the kubeconfig");
    let operator_client = client_from_kubeconfig(&kubeconfig).await;
    let options = RunOptions {
        concurrency: 2,
        namespaces,
        ..Default::default()
    };
    let (stop, shutdown) = watch::channel(false);
    let hooks = Hooks {
        metrics: Metrics::new(),
        shutdown: shutdown.clone(),
        ready: Arc::new(watch::channel(false).0),
    };
    let operator = tokio::spawn({
        let lease = lease.clone();
        async move {
            match lease {
                None => {
                    controller::run_with(operator_client, test_settings(), options, hooks).await
                }
                Some(lease) => {
                    let ready = hooks.ready.clone();
                    let lease_client = operator_client.clone();
                    let work = move |stop: Shutdown| {
                        let hooks = Hooks {
                            shutdown: stop,
                            ..hooks
                        };
                        controller::run_with(operator_client, test_settings(), options, hooks)
                    };
                    leader::run_as_leader(lease_client, lease, shutdown, ready, work).await
                }
            }
        }
    });

    let avatar = wait_until_uploaded(admin, upload_namespace).await;
    let status = avatar.status.expect("UserAvatar has status");
    assert!(
        status.last_error.is_empty(),
        "lastError: {:?}",
        status.last_error
    );
    assert_eq!(directory.uploads_for(USER_ID), 1);
    assert_event_about_alice(admin, upload_namespace).await;
    if let Some(lease) = &lease {
        let leases: Api<Lease> = Api::namespaced(admin.clone(), &lease.namespace);
        let lease_object = leases
            .get(&lease.name)
            .await
            .expect("the operator created the Lease");
        let holder = lease_object.spec.and_then(|spec| spec.holder_identity);
        assert_eq!(holder.as_deref(), Some(lease.identity.as_str()));
    }

    let _ = stop.send(true);
    let result = tokio::time::timeout(WAIT, operator)
        .await
        .expect("the operator stops within 30 s of shutdown")
        .expect("the operator task did not panic");
    assert!(
        result.is_ok(),
        "the operator failed: {:#}",
        result.unwrap_err()
    );
}

async fn assert_event_about_alice(admin: &Client, namespace: &str) {
    let events: Api<Event> = Api::namespaced(admin.clone(), namespace);
    let events = events
        .list(&ListParams::default())
        .await
        .expect("list Events");
    let about_alice = events.items.iter().any(|event| {
        let regarding = event.regarding.as_ref();
        regarding.is_some_and(|r| r.kind.as_deref() == Some("UserAvatar"))
            && regarding.is_some_and(|r| r.name.as_deref() == Some("alice"))
    });
    assert!(
        about_alice,
        "the operator published no Event about UserAvatar alice in {namespace}"
    );
}

/// Installs the chart's RBAC twice, once cluster-wide and once for two namespaces with leader
/// election, checks with `kubectl auth can-i` as each service account that every request the
/// operator makes is allowed and that requests outside the rules are denied, and then runs
/// the operator with each identity through one upload.
#[tokio::test]
async fn chart_rbac_on_control_plane() {
    support::init_logging();
    y360_avatar_operator::install_crypto_provider();
    helm();

    let cluster = LocalCluster::start()
        .await
        .expect("local control plane starts");
    let admin = client_from_kubeconfig(&cluster.kubeconfig_yaml()).await;
    let scratch = ScratchDir::new();
    for namespace in [
        "y360-system",
        "y360-avatars",
        "wide-system",
        "wide-team",
        "scoped-system",
        "team-a",
        "team-b",
        "team-c",
    ] {
        create_namespace(&admin, namespace).await;
    }

    // Release `wide`: cluster-wide RBAC, and the CRDs.
    install_rbac(&cluster, "wide", "wide-system", &[]);
    let wait = [
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "--all",
    ];
    kubectl(&cluster, &wait);

    // Every object of a full render is valid for kube-apiserver v1.36.
    validate_full_render(&cluster, RELEASE_NAMESPACE, &[]);
    validate_full_render(&cluster, RELEASE_NAMESPACE, &["-f", PRODUCTION_EXAMPLE]);

    // Release `scoped`: two namespaces and leader election; the CRDs come from `wide`.
    let scoped_values = [
        "--set-json",
        r#"watchNamespaces=["team-a","team-b"]"#,
        "--set",
        "leaderElection.enabled=true",
        "--set",
        "installCRDs=false",
    ];
    install_rbac(&cluster, "scoped", "scoped-system", &scoped_values);

    let wide = service_account_kubeconfig(
        &cluster,
        &scratch,
        "wide-system",
        "wide-y360-avatar-operator",
    );
    let scoped = service_account_kubeconfig(
        &cluster,
        &scratch,
        "scoped-system",
        "scoped-y360-avatar-operator",
    );

    let whoami = cluster
        .kubectl_with(&wide.kubeconfig)
        .args(["auth", "whoami", "-o", "json"])
        .output()
        .expect("kubectl runs");
    let review: Value = serde_json::from_slice(&whoami.stdout).expect("whoami prints JSON");
    let user_info = &review["status"]["userInfo"];
    assert_eq!(user_info["username"], wide.user());
    let groups: BTreeSet<&str> = user_info["groups"]
        .as_array()
        .expect("whoami lists groups")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let expected_groups = BTreeSet::from([
        "system:authenticated",
        "system:serviceaccounts",
        "system:serviceaccounts:wide-system",
    ]);
    assert_eq!(groups, expected_groups);

    // Cluster-wide release: everything the operator needs, in any namespace and across all.
    assert_allowed(&cluster, &wide, &operator_requests("wide-team"));
    assert_allowed(&cluster, &wide, &operator_requests("*")[..6]);
    assert_allowed(&cluster, &wide, &[(&["list", "configmaps"], "*")]);
    assert_denied(&cluster, &wide, &forbidden_requests("wide-team"));
    assert_denied(&cluster, &wide, &[(&["list", "secrets"], "*")]);

    // Namespaced release: the same in team-a and team-b, nothing in team-c or across all.
    for namespace in ["team-a", "team-b"] {
        assert_allowed(&cluster, &scoped, &operator_requests(namespace));
        assert_denied(&cluster, &scoped, &forbidden_requests(namespace));
    }
    assert_denied(&cluster, &scoped, &operator_requests("team-c"));
    assert_denied(&cluster, &scoped, &operator_requests("*")[..6]);

    // Leader election: create any Lease, and get and patch only the named one, in the
    // release namespace.
    let lease = format!("{LEASES}/y360-avatar-operator");
    let other_lease = format!("{LEASES}/another-controller");
    let lease_allowed: [(&[&str], &str); 3] = [
        (&["create", LEASES], "scoped-system"),
        (&["get", &lease], "scoped-system"),
        (&["patch", &lease], "scoped-system"),
    ];
    assert_allowed(&cluster, &scoped, &lease_allowed);
    let lease_denied: [(&[&str], &str); 7] = [
        (&["update", &lease], "scoped-system"),
        (&["delete", &lease], "scoped-system"),
        (&["get", &other_lease], "scoped-system"),
        (&["patch", &other_lease], "scoped-system"),
        (&["list", LEASES], "scoped-system"),
        (&["watch", LEASES], "scoped-system"),
        (&["create", LEASES], "team-a"),
    ];
    assert_denied(&cluster, &scoped, &lease_denied);
    // The operator's rules are bound only in the watched namespaces, not the release's own.
    assert_denied(&cluster, &scoped, &[(&["get", "secrets"], "scoped-system")]);

    // The rules are enough for a real run: one upload with each identity, the namespaced one
    // behind leader election as the chart deploys it with leaderElection.enabled.
    upload_as(&admin, &wide, Vec::new(), "wide-team", None).await;
    let watched = vec!["team-a".to_owned(), "team-b".to_owned()];
    let lease = LeaseSettings {
        namespace: "scoped-system".to_owned(),
        name: "y360-avatar-operator".to_owned(),
        identity: "scoped-operator-0".to_owned(),
        duration_seconds: 15,
        grace_seconds: 5,
    };
    upload_as(&admin, &scoped, watched, "team-b", Some(lease)).await;

    drop(scratch);
    cluster.stop().await;
}
