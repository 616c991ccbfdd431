//! Leader election against the real API server with a holder whose clock is skewed: a lease
//! renewed by a replica two hours behind is never stolen, and one left by a replica two hours
//! ahead is taken once it has stayed unchanged for a lease duration of our own clock.

use std::time::{Duration, Instant};

use gradients::operator::leader::LeaseLock;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::support::*;

const DURATION: Duration = Duration::from_secs(2);

/// The other replica's claim, with its clock `skew_hours` off ours.
fn claim(skew_hours: i64, renewals: i64) -> LeaseSpec {
    let renewed = Timestamp::now()
        .checked_add(SignedDuration::from_hours(skew_hours))
        .and_then(|t| t.checked_add(SignedDuration::from_millis(renewals)))
        .unwrap();
    LeaseSpec {
        holder_identity: Some("other-replica".into()),
        lease_duration_seconds: Some(DURATION.as_secs() as i32),
        renew_time: Some(MicroTime(renewed)),
        ..LeaseSpec::default()
    }
}

async fn create(api: &Api<Lease>, name: &str, spec: LeaseSpec) {
    let lease = Lease { metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() }, spec: Some(spec) };
    api.create(&PostParams::default(), &lease).await.unwrap();
}

/// Tries to take the lease every 200 ms for `window`; when it is taken, how long that took.
async fn try_for(lock: &LeaseLock, window: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < window {
        if lock.try_acquire_or_renew().await.unwrap() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn leases_are_judged_by_local_time_never_by_the_holders_clock() {
    let cluster = Cluster::connect().await;
    let ns = cluster.fresh_namespace("e2e-lease-skew").await;
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), &ns);

    // A holder two hours behind that keeps renewing: its renewTime looks long expired.
    create(&api, "behind", claim(-2, 0)).await;
    let renewer = {
        let api = api.clone();
        tokio::spawn(async move {
            for n in 1..=12 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let mut lease = api.get("behind").await.unwrap();
                lease.spec = Some(claim(-2, n * 500));
                api.replace("behind", &PostParams::default(), &lease).await.unwrap();
            }
        })
    };
    let ours = LeaseLock::new(cluster.client.clone(), &ns, "behind", "us", DURATION);
    assert_eq!(try_for(&ours, Duration::from_secs(5)).await, None, "took a lease that was being renewed");
    renewer.await.unwrap();
    // Once the renewals stop, it lapses after a lease duration of our time.
    let took = try_for(&ours, Duration::from_secs(10)).await.expect("the abandoned lease was never taken");
    assert!(took >= DURATION, "taken {took:?} after the last renewal: before it lapsed");

    // A holder two hours ahead that stopped: its renewTime looks valid for two hours.
    create(&api, "ahead", claim(2, 0)).await;
    let ours = LeaseLock::new(cluster.client.clone(), &ns, "ahead", "us", DURATION);
    let took =
        try_for(&ours, Duration::from_secs(10)).await.expect("a lapsed lease with a future renewTime was never taken");
    assert!(took >= DURATION && took < DURATION * 3, "taken after {took:?}");
    let lease = api.get("ahead").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("us"));
    assert_eq!(lease.lease_transitions, Some(1));
    cluster.delete_namespace(&ns).await;
}
