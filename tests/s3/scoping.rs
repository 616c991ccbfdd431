//! The attacks first: a trainer holding its operator-signed URLs tries to read the held-out
//! data, a rival's output and the sealed area, and to write anywhere but its own object. The
//! real server must refuse every one (403), and an expired URL too.

use std::time::Duration;

use chrono::Utc;
use gradients::api::MinerSubmission;
use gradients::storage::{ObjectAccess, Transfers};
use gradients::workloads::{WorkloadConfig, trainer};

use super::*;

pub const PREFIX: &str = "prod";
pub const NS: &str = "tournaments";

/// The fixtures' installation with `s3://gradients/prod` artifacts on `server`.
pub fn s3_config(server: &S3Server) -> WorkloadConfig {
    let text = std::fs::read_to_string(crate::common::repo().join("tests/fixtures/workloads/config.yaml")).unwrap();
    let mut config: WorkloadConfig = serde_norway::from_str(&text).unwrap();
    config.artifacts = format!("s3://{BUCKET}/{PREFIX}");
    config.object_store = Some(server.store.clone());
    config.allowed_sources = vec![format!("s3://{BUCKET}/models/"), format!("s3://{BUCKET}/datasets/")];
    config
}

pub fn submission(config: &WorkloadConfig, task: &str, training: &str, base_model: &str) -> MinerSubmission {
    let text = std::fs::read_to_string(crate::common::repo().join("tests/fixtures/workloads/submission.yaml")).unwrap();
    let mut submission: MinerSubmission = serde_norway::from_str(&text).unwrap();
    submission.spec.task = task.into();
    submission.spec.base_model_uri = base_model.into();
    submission.spec.data_uri = config.data_uri(NS, task);
    submission.spec.artifact_uri = config.model_uri(NS, task, training);
    submission
}

pub fn access(server: &S3Server, sources: &[&str]) -> ObjectAccess {
    block_on(ObjectAccess::read(&server.store, &credentials(), sources, Utc::now())).unwrap()
}

/// The transfers a Job's (first) container was given.
pub fn transfers_of(job: &k8s_openapi::api::batch::v1::Job) -> Transfers {
    let container = &job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    let env = container.env.as_ref().unwrap();
    let json = env.iter().find(|e| e.name == "GRADIENTS_TRANSFERS").and_then(|e| e.value.clone()).unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
#[ignore = "starts the S3 server (built by e2e/build-s3-server); run by scripts/test"]
fn a_trainers_urls_open_its_inputs_and_its_own_output_and_nothing_else() {
    let server = S3Server::start();
    let config = s3_config(&server);
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let area = format!("{PREFIX}/tournaments/{NS}/t");
    for key in [
        "models/tiny/config.json".to_string(),
        "models/tiny/model.safetensors".to_string(),
        format!("{area}/data/training.tar"),
        format!("{area}/data/heldout.tar"),
        format!("{area}/models/rival-1.tar"),
        format!("{area}/sealed/rival-1.tar"),
        format!("{area}/sealed/mine-1.tar"),
    ] {
        server.put(&key, &file);
    }
    let base = format!("s3://{BUCKET}/models/tiny");
    let submission = submission(&config, "t", "mine-1", &base);
    let job = trainer::trainer_job(&submission, &config, Some(&access(&server, &[&base]))).unwrap();
    let rendered = serde_json::to_string(&job).unwrap();
    assert!(!rendered.contains(&credentials().secret_access_key), "the operator's secret is never in a Job");
    assert!(
        !job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
            .args
            .iter()
            .flatten()
            .any(|a| a.contains("X-Amz")),
        "no URL in argv"
    );
    let transfers = transfers_of(&job);

    // What it may do.
    let paths: Vec<&str> = transfers.fetch.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, ["artifacts/base-model/config.json", "artifacts/base-model/model.safetensors"]);
    for object in &transfers.fetch {
        assert_eq!(status("GET", &object.url).0, 200, "{}", object.path);
    }
    assert_eq!(transfers.fetch_archives.len(), 1);
    let inputs = &transfers.fetch_archives[0];
    assert_eq!(inputs.dir, "artifacts/inputs");
    assert_eq!(status("GET", &inputs.url).0, 200);
    assert_eq!(transfers.store_archives.len(), 1);
    let output = &transfers.store_archives[0];
    assert!(output.url.contains(&format!("/{area}/models/mine-1.tar?")), "{}", output.url);
    assert_eq!(status("PUT", &output.url).0, 200, "its own output");

    // The attacks: every URL it holds, pointed at what it must not touch.
    let forbidden = [
        format!("{area}/data/heldout.tar"),
        format!("{area}/models/rival-1.tar"),
        format!("{area}/sealed/rival-1.tar"),
        format!("{area}/sealed/mine-1.tar"),
        format!("{area}/data/training.tar"),
    ];
    let mut urls: Vec<&str> = transfers.fetch.iter().map(|o| o.url.as_str()).collect();
    urls.extend([inputs.url.as_str(), output.url.as_str()]);
    let mut attacks = 0;
    for url in &urls {
        for key in &forbidden {
            for method in ["GET", "PUT"] {
                let target = retarget(url, key);
                if target == *url
                    && ((method == "GET" && *url != output.url) || (method == "PUT" && *url == output.url))
                {
                    continue; // what it may do
                }
                let (code, body) = status(method, &target);
                assert_eq!(code, 403, "{method} {key} with a trainer URL: {body}");
                attacks += 1;
            }
        }
        // The same URL with the other method: reading its output back, overwriting its inputs.
        let other = if *url == output.url { "GET" } else { "PUT" };
        assert_eq!(status(other, url).0, 403, "{other} with a URL signed for the other method");
        attacks += 1;
    }
    // Without a signature nothing is public.
    assert_eq!(status("GET", inputs.url.split('?').next().unwrap()).0, 403);
    eprintln!("{attacks} attacks with a trainer's URLs, all refused (403)");
    assert!(attacks >= 30);

    // An expired URL is refused, however well signed.
    let key = format!("{area}/data/training.tar");
    let expired = server.signer().get(&key, Utc::now() - chrono::Duration::hours(2), Duration::from_secs(3600));
    let (code, body) = status("GET", &expired);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("expired"), "{body}");
    let fresh = server.signer().get(&key, Utc::now(), Duration::from_secs(3600));
    assert_eq!(status("GET", &fresh).0, 200);
}
