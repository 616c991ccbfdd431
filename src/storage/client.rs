//! Plain HTTP(S) against presigned URLs: GET to a file, PUT a file, list a prefix. The only
//! network code of the storage path; everything it sends was signed by [`super::Signer`].

use std::path::Path;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Signer, StorageError, io_at};

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn client()
-> Result<Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Body>, StorageError>
{
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| {
            StorageError::Config(format!(
                "TLS roots: {e} (the image needs CA certificates, e.g. Debian's ca-certificates)"
            ))
        })?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// What a URL is about, for errors: its path without the query (the signature stays out of logs).
fn what(url: &str) -> String {
    url.split('?').next().unwrap_or_default().to_string()
}

async fn send(
    method: &'static str,
    url: &str,
    body: Body,
    length: Option<u64>,
) -> Result<hyper::Response<hyper::body::Incoming>, StorageError> {
    let mut request = hyper::Request::builder().method(method).uri(url);
    if let Some(length) = length {
        request = request.header(hyper::header::CONTENT_LENGTH, length);
    }
    let request = request.body(body).map_err(|e| StorageError::Http { method, what: what(url), why: e.to_string() })?;
    let response = client()?.request(request).await.map_err(|e| StorageError::Http {
        method,
        what: what(url),
        why: e.to_string(),
    })?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
    Err(StorageError::Status { method, what: what(url), status, body })
}

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

/// GETs `url` into the file `path` (streamed).
pub async fn get_to_file(url: &str, path: &Path) -> Result<u64, StorageError> {
    let response = send("GET", url, empty(), None).await?;
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io_at(parent))?;
    }
    let mut file = tokio::fs::File::create(path).await.map_err(io_at(path))?;
    let mut body = response.into_body();
    let mut written = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| StorageError::Http { method: "GET", what: what(url), why: e.to_string() })?;
        if let Ok(data) = frame.into_data() {
            file.write_all(&data).await.map_err(io_at(path))?;
            written += data.len() as u64;
        }
    }
    file.flush().await.map_err(io_at(path))?;
    Ok(written)
}

/// GETs `url` into memory (small objects: listings, manifests).
pub async fn get_bytes(url: &str) -> Result<Bytes, StorageError> {
    let response = send("GET", url, empty(), None).await?;
    response.into_body().collect().await.map(|b| b.to_bytes()).map_err(|e| StorageError::Http {
        method: "GET",
        what: what(url),
        why: e.to_string(),
    })
}

/// PUTs the file `path` to `url` (streamed, with its length: a single PUT, at most 5 GiB on S3).
pub async fn put_file(url: &str, path: &Path) -> Result<(), StorageError> {
    let file = tokio::fs::File::open(path).await.map_err(io_at(path))?;
    let length = file.metadata().await.map_err(io_at(path))?.len();
    let chunks = futures::stream::unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; 1 << 20];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buffer))), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    send("PUT", url, StreamBody::new(chunks).boxed(), Some(length)).await.map(drop)
}

/// PUTs `bytes` to `url`.
pub async fn put_bytes(url: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
    let length = bytes.len() as u64;
    send("PUT", url, Full::new(Bytes::from(bytes)).map_err(|never| match never {}).boxed(), Some(length))
        .await
        .map(drop)
}

/// Creates the signer's bucket (fixtures; an existing bucket of ours is fine).
pub async fn create_bucket(signer: &Signer) -> Result<(), StorageError> {
    match send("PUT", &signer.create_bucket(Utc::now()), empty(), Some(0)).await {
        Err(StorageError::Status { status: 409, .. }) | Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Every key below `prefix` (with the operator's credentials), sorted.
pub async fn list(signer: &Signer, prefix: &str) -> Result<Vec<String>, StorageError> {
    let mut keys = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let url = signer.list(prefix, continuation.as_deref(), Utc::now());
        let body = get_bytes(&url).await?;
        let text = String::from_utf8_lossy(&body);
        let page = rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(|e| StorageError::Http {
            method: "GET",
            what: what(&url),
            why: format!("listing: {e}"),
        })?;
        keys.extend(page.contents.into_iter().map(|c| c.key));
        match page.next_continuation_token {
            Some(token) => continuation = Some(token),
            None => break,
        }
    }
    keys.sort();
    Ok(keys)
}
