//! S3 locations and presigning (SigV4, `rusty-s3`). Pure: the time is an argument.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusty_s3::{Bucket, S3Action, UrlStyle};
use serde::{Deserialize, Serialize};

use super::StorageError;

/// S3 accepts presigned URLs valid for at most 7 days.
pub const MAX_URL_LIFETIME_S: u64 = 7 * 24 * 3600;

/// How the operator reaches the object store (`workloads.objectStore`). Credentials are not
/// here: they come from the operator's environment ([`Credentials::from_env`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectStore {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://seaweedfs.storage:8333`…
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// `https://ENDPOINT/BUCKET/KEY` (true, what most S3-compatible servers want) or
    /// `https://BUCKET.ENDPOINT/KEY`.
    #[serde(default = "default_path_style")]
    pub path_style: bool,
    /// What every workload role may connect to on S3 (NetworkPolicy egress rules: the endpoint,
    /// DNS): the roles are otherwise cut off, and their URLs need the endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<k8s_openapi::api::networking::v1::NetworkPolicyEgressRule>,
}

fn default_region() -> String {
    "us-east-1".to_string()
}
fn default_path_style() -> bool {
    true
}

/// The operator's own key pair. Never written into a workload.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <secret>)", self.access_key_id)
    }
}

/// The variables the chart fills from the Secret `objectStore.credentialsSecret`.
pub const ACCESS_KEY_ENV: &str = "GRADIENTS_S3_ACCESS_KEY_ID";
pub const SECRET_KEY_ENV: &str = "GRADIENTS_S3_SECRET_ACCESS_KEY";

impl Credentials {
    pub fn from_env() -> Result<Self, StorageError> {
        let read = |name: &str| {
            std::env::var(name).map_err(|_| StorageError::Config(format!("{name} is not set (the credentials Secret)")))
        };
        Ok(Self { access_key_id: read(ACCESS_KEY_ENV)?, secret_access_key: read(SECRET_KEY_ENV)? })
    }
}

/// `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    pub key: String,
}

impl S3Uri {
    /// Parses `s3://bucket/key`; the key may be empty (a bucket's root). Refuses empty, `.` and
    /// `..` segments, which would name a different object than they seem to.
    pub fn parse(uri: &str) -> Result<Self, StorageError> {
        let rest = uri.strip_prefix("s3://").ok_or_else(|| StorageError::NotS3(uri.to_string()))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let key = key.trim_end_matches('/');
        let clean = key.is_empty() || key.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
        if bucket.is_empty() || !clean {
            return Err(StorageError::NotS3(uri.to_string()));
        }
        Ok(Self { bucket: bucket.to_string(), key: key.to_string() })
    }

    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// Signs URLs for one bucket with the operator's credentials.
#[derive(Debug, Clone)]
pub struct Signer {
    bucket: Bucket,
    credentials: rusty_s3::Credentials,
}

impl Signer {
    pub fn new(store: &ObjectStore, bucket: &str, credentials: &Credentials) -> Result<Self, StorageError> {
        let endpoint = url::Url::parse(&store.endpoint)
            .map_err(|e| StorageError::Config(format!("objectStore.endpoint {:?}: {e}", store.endpoint)))?;
        let style = if store.path_style { UrlStyle::Path } else { UrlStyle::VirtualHost };
        let bucket = Bucket::new(endpoint, style, bucket.to_string(), store.region.clone())
            .map_err(|e| StorageError::Config(format!("bucket {bucket:?} at {:?}: {e}", store.endpoint)))?;
        let credentials = rusty_s3::Credentials::new(&credentials.access_key_id, &credentials.secret_access_key);
        Ok(Self { bucket, credentials })
    }

    pub fn bucket(&self) -> &str {
        self.bucket.name()
    }

    /// A URL that GETs `key`, valid from `now` for `lifetime` (capped at S3's 7 days).
    pub fn get(&self, key: &str, now: DateTime<Utc>, lifetime: Duration) -> String {
        let action = self.bucket.get_object(Some(&self.credentials), key);
        action.sign_with_time(cap(lifetime), &timestamp(now)).to_string()
    }

    /// A URL that PUTs exactly `key` (any body), valid from `now` for `lifetime`.
    pub fn put(&self, key: &str, now: DateTime<Utc>, lifetime: Duration) -> String {
        let action = self.bucket.put_object(Some(&self.credentials), key);
        action.sign_with_time(cap(lifetime), &timestamp(now)).to_string()
    }

    /// A URL that lists the keys below `prefix` (the operator's own use).
    pub fn list(&self, prefix: &str, continuation: Option<&str>, now: DateTime<Utc>) -> String {
        let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
        action.with_prefix(prefix);
        if let Some(token) = continuation {
            action.with_continuation_token(token);
        }
        action.sign_with_time(Duration::from_secs(300), &timestamp(now)).to_string()
    }

    /// A URL that creates the bucket (test fixtures and first installs).
    pub fn create_bucket(&self, now: DateTime<Utc>) -> String {
        let action = self.bucket.create_bucket(&self.credentials);
        action.sign_with_time(Duration::from_secs(300), &timestamp(now)).to_string()
    }
}

fn cap(lifetime: Duration) -> Duration {
    lifetime.clamp(Duration::from_secs(1), Duration::from_secs(MAX_URL_LIFETIME_S))
}

fn timestamp(now: DateTime<Utc>) -> jiff::Timestamp {
    jiff::Timestamp::from_second(now.timestamp()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        let store = ObjectStore {
            endpoint: "http://127.0.0.1:8014".into(),
            region: "us-east-1".into(),
            path_style: true,
            egress: vec![],
        };
        Signer::new(&store, "gradients", &Credentials { access_key_id: "AK".into(), secret_access_key: "SK".into() })
            .unwrap()
    }

    #[test]
    fn locations_parse_and_refuse_steps_out() {
        assert_eq!(S3Uri::parse("s3://b/a/b.tar").unwrap(), S3Uri { bucket: "b".into(), key: "a/b.tar".into() });
        assert_eq!(S3Uri::parse("s3://b/models/x/").unwrap().key, "models/x");
        for bad in ["s3://", "s3:///k", "s3://b/a/../c", "s3://b/a//c", "/artifacts/x", "s3://b/./c"] {
            assert!(S3Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_url_names_one_object_one_method_and_its_expiry() {
        let now: DateTime<Utc> = "2026-11-30T12:00:00Z".parse().unwrap();
        let get = signer().get("t/models/x.tar", now, Duration::from_secs(3600));
        assert!(get.starts_with("http://127.0.0.1:8014/gradients/t/models/x.tar?"), "{get}");
        assert!(get.contains("X-Amz-Expires=3600") && get.contains("X-Amz-Date=20261130T120000Z"), "{get}");
        assert!(!get.contains("SK"), "the secret never appears");
        assert_ne!(get, signer().put("t/models/x.tar", now, Duration::from_secs(3600)));
        let long = signer().get("k", now, Duration::from_secs(30 * 24 * 3600));
        assert!(long.contains(&format!("X-Amz-Expires={MAX_URL_LIFETIME_S}")), "{long}");
    }
}
