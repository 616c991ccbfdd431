//! Leader election on a `coordination.k8s.io` Lease, so that two replicas never both write.
//! Only the holder runs the controllers; a replica that cannot renew in time stops them and
//! exits, as client-go's leader election does, so writes are always gated on the claim.
//!
//! Another replica's claim is judged as client-go judges it: never by comparing the
//! holder's `renewTime` (the holder's clock) with this host's clock, but by how long the
//! lease record has stayed unchanged on this replica's own monotonic clock. A claim that
//! keeps changing is live whatever its timestamps say; one unchanged for a lease duration
//! has lapsed. (kube-lease-manager and kube-leader-election, the maintained crates, both
//! compare `renewTime + duration` with the local wall clock, so a skewed node would steal a
//! live lease or wait on a dead one; kube-leader-election also needs kube 4.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::error::Result;

pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    pub duration: Duration,
    observed: Mutex<Observer>,
}

impl LeaseLock {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            observed: Mutex::new(Observer::default()),
        }
    }

    /// How long the holder may go without renewing before it must stop leading: shorter
    /// than the lease duration (client-go's renewDeadline), so it has stopped before any
    /// other replica can see its claim lapse.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// Takes the lease if it is free, lapsed or ours, and renews it; `false` when another
    /// replica holds a live claim or won the race (the write is conditional on resourceVersion).
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(self.claim(now, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.identity;
        let lapsed = self.observed.lock().map_or(true, |mut o| o.lapsed(&spec, self.duration, Instant::now()));
        if !ours && !holder.is_empty() && !lapsed {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours { spec.acquire_time.clone() } else { None };
        lease.spec = Some(self.claim(now, acquired, transitions));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the lease up so that the next replica need not wait for it to expire.
    pub async fn release(&self) -> Result<()> {
        if let Some(mut lease) = self.api.get_opt(&self.name).await? {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() == Some(self.identity.as_str()) {
                spec.holder_identity = None;
                spec.renew_time = None;
                self.api.replace(&self.name, &PostParams::default(), &lease).await?;
            }
        }
        Ok(())
    }

    fn claim(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

/// The lease record as last seen, and when (on this replica's monotonic clock) it last changed.
#[derive(Debug, Default)]
struct Observer {
    last: Option<(LeaseSpec, Instant)>,
}

impl Observer {
    /// Records `spec` as seen at `now`; true when the claim has not changed for a lease
    /// duration (the longer of the holder's and ours) of local time. A record seen for the
    /// first time counts from now: a replica that just started waits a full duration.
    fn lapsed(&mut self, spec: &LeaseSpec, ours: Duration, now: Instant) -> bool {
        let changed_at = match &self.last {
            Some((seen, at)) if seen == spec => *at,
            _ => now,
        };
        self.last = Some((spec.clone(), changed_at));
        let theirs = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        now.saturating_duration_since(changed_at) > theirs.max(ours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn spec(holder: &str, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }
    }

    /// A timestamp `h` hours from now on this host's clock.
    fn hours(h: i64) -> Timestamp {
        Timestamp::now().checked_add(SignedDuration::from_hours(h)).unwrap()
    }

    #[test]
    fn a_claim_that_keeps_changing_is_live_whatever_its_clock_says() {
        let start = Instant::now();
        let mut observer = Observer::default();
        let ours = Duration::from_secs(15);
        // The holder's clock is two hours behind ours: its renewTime looks long expired.
        for tick in 0..20 {
            let renewed = hours(-2).checked_add(SignedDuration::from_secs(tick * 5)).unwrap();
            let now = start + Duration::from_secs(tick as u64 * 5);
            assert!(!observer.lapsed(&spec("other", renewed), ours, now), "tick {tick}");
        }
    }

    #[test]
    fn a_claim_that_stopped_changing_lapses_after_a_duration_of_local_time() {
        let start = Instant::now();
        let mut observer = Observer::default();
        let ours = Duration::from_secs(15);
        // The holder's clock is two hours ahead: its renewTime looks valid for two hours.
        let frozen = spec("other", hours(2));
        assert!(!observer.lapsed(&frozen, ours, start), "first seen: wait a full duration");
        assert!(!observer.lapsed(&frozen, ours, start + Duration::from_secs(10)));
        assert!(!observer.lapsed(&frozen, ours, start + Duration::from_secs(15)));
        assert!(observer.lapsed(&frozen, ours, start + Duration::from_secs(16)));
        // The holder renews after all: live again, for another full duration.
        let renewed = spec("other", hours(3));
        assert!(!observer.lapsed(&renewed, ours, start + Duration::from_secs(17)));
        assert!(!observer.lapsed(&renewed, ours, start + Duration::from_secs(30)));
        assert!(observer.lapsed(&renewed, ours, start + Duration::from_secs(33)));
    }

    #[test]
    fn the_longer_of_the_holders_duration_and_ours_counts() {
        let start = Instant::now();
        let mut observer = Observer::default();
        let mut long = spec("other", hours(0));
        long.lease_duration_seconds = Some(60);
        observer.lapsed(&long, Duration::from_secs(15), start);
        assert!(!observer.lapsed(&long, Duration::from_secs(15), start + Duration::from_secs(30)));
        assert!(observer.lapsed(&long, Duration::from_secs(15), start + Duration::from_secs(61)));
    }
}
