//! The chart as a user installs it: two releases side by side on one cluster (release-prefixed
//! names, their own Leases and RBAC), each serving its own namespace; the optional
//! ServiceMonitor and PrometheusRule validated by the API server against the Prometheus
//! Operator's own CRDs (e2e/crds/).

use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;

use crate::support::*;

fn helm(args: &[&str]) -> String {
    let output = Command::new("helm").args(args).output().expect("helm on PATH (e2e/cluster env)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "helm {args:?} failed: {text}");
    text
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn two_releases_install_side_by_side() {
    let cluster = Cluster::connect().await;
    let chart = root().join("charts/gradients");
    let chart = chart.to_str().unwrap();
    let crds = root().join("e2e/crds");
    let crds = crds.to_str().unwrap();
    cluster.kubectl(&["apply", "--server-side", "-f", crds]);
    cluster.kubectl(&["wait", "--for=condition=established", "--timeout=60s", "-f", crds]);
    let mut installed = Vec::new();
    for release in ["team-a", "team-b"] {
        let ns = cluster.fresh_namespace(release).await;
        let notes = helm(&[
            "install",
            release,
            chart,
            "--namespace",
            &ns,
            "--wait",
            "--timeout",
            "60s",
            "--set",
            "replicaCount=0",
            "--set-json",
            &format!(r#"watchNamespaces=["{ns}"]"#),
            "--set",
            "logFormat=json",
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
        ]);
        assert!(notes.contains(&format!("installed as {release}-gradients-operator in namespace {ns}")), "{notes}");
        assert!(notes.contains(&format!("ConfigMap {release}-gradients-operator-dashboard holds")), "{notes}");
        installed.push((release, ns));
    }
    for (release, ns) in &installed {
        let name = format!("{release}-gradients-operator");
        let deployment = Api::<Deployment>::namespaced(cluster.client.clone(), ns).get(&name).await.unwrap();
        let env = deployment.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
        let value = |key: &str| env.iter().find(|e| e.name == key).and_then(|e| e.value.clone());
        assert_eq!(value("GRADIENTS_LEASE_NAME"), Some(name.clone()), "each release elects its own leader");
        assert_eq!(value("GRADIENTS_WATCH_NAMESPACES"), Some(ns.clone()));
        assert_eq!(value("GRADIENTS_LOG_FORMAT").as_deref(), Some("json"));
        let binding = Api::<RoleBinding>::namespaced(cluster.client.clone(), ns).get(&name).await.unwrap();
        assert_eq!(binding.subjects.unwrap()[0].name, name, "its Role is bound to its own ServiceAccount");
        Api::<PodDisruptionBudget>::namespaced(cluster.client.clone(), ns).get(&name).await.unwrap();
        // Accepted by the API server against the Prometheus Operator's schemas.
        let monitors = cluster.kubectl(&["get", "servicemonitors,prometheusrules", "-n", ns, "-o", "name"]);
        assert!(monitors.contains(&format!("servicemonitor.monitoring.coreos.com/{name}")), "{monitors}");
        assert!(monitors.contains(&format!("prometheusrule.monitoring.coreos.com/{name}")), "{monitors}");
        let path = "jsonpath={.spec.groups[0].rules[*].alert}";
        let alerts = cluster.kubectl(&["get", "prometheusrule", &name, "-n", ns, "-o", path]);
        assert!(alerts.contains("GradientsWeightsNotPushed") && alerts.contains("GradientsTaskFailed"), "{alerts}");
    }
    // A value the schema refuses never reaches the cluster.
    let refused = Command::new("helm")
        .args([
            "upgrade",
            "team-a",
            chart,
            "--namespace",
            &installed[0].1,
            "--reuse-values",
            "--set",
            "replicaCount=two",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("/replicaCount"), "{refused:?}");
    for (release, ns) in &installed {
        helm(&["uninstall", release, "--namespace", ns, "--wait"]);
        cluster.delete_namespace(ns).await;
    }
}
