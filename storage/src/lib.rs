//! Where result bytes live. By default in Postgres (`pgshot.outputs.bytes`); with
//! `PGSHOT_STORAGE=s3://bucket/prefix`, in an S3-compatible bucket, and Postgres keeps only each
//! object's key, size and SHA-256. The worker uploads, the API serves (streamed through it, or by
//! redirect to a presigned URL), and workers delete what no output refers to any more.
//!
//! The bucket is reached with the usual AWS variables: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or `AWS_DEFAULT_REGION`; default
//! `us-east-1`) and `AWS_ENDPOINT_URL` for a server other than AWS (MinIO, R2, moto...), which is
//! then addressed path-style.

use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use sha2::{Digest, Sha256};
use url::Url;

/// Presigned requests the worker and the API make themselves are valid this long.
const SIGNED_FOR: Duration = Duration::from_secs(300);

/// `PGSHOT_STORAGE`: `postgres` (or unset) or `s3://bucket[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Postgres,
    S3 { bucket: String, prefix: String },
}

impl Location {
    pub fn parse(value: Option<&str>) -> Result<Location, String> {
        let value = value.map(str::trim).unwrap_or_default();
        if value.is_empty() || value == "postgres" {
            return Ok(Location::Postgres);
        }
        let Some(rest) = value.strip_prefix("s3://") else {
            return Err(format!("PGSHOT_STORAGE must be postgres or s3://bucket/prefix, not {value:?}"));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket naming rules: 3 to 63 lower-case letters, digits, dots and hyphens.
        let valid = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid {
            return Err(format!("PGSHOT_STORAGE: {bucket:?} is not an S3 bucket name"));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if prefix.split('/').any(|part| part == "." || part == "..") {
            return Err(format!("PGSHOT_STORAGE: the prefix {prefix:?} has a . or .. part"));
        }
        Ok(Location::S3 { bucket: bucket.to_string(), prefix })
    }
}

/// An S3-compatible bucket holding results.
#[derive(Clone)]
pub struct ObjectStore {
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectStore({}, prefix {:?})", self.bucket.base_url(), self.prefix)
    }
}

/// The credentials requests are signed with.
#[derive(Clone)]
pub struct Keys {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

/// What an upload stored: the key, and the checksum Postgres keeps beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub key: String,
    pub size: i64,
    pub sha256: Vec<u8>,
}

impl ObjectStore {
    /// The bucket `PGSHOT_STORAGE` names, or `None` when results stay in Postgres.
    pub fn from_env() -> Result<Option<ObjectStore>, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match Location::parse(env("PGSHOT_STORAGE").as_deref())? {
            Location::Postgres => Ok(None),
            Location::S3 { bucket, prefix } => {
                let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).unwrap_or("us-east-1".into());
                let key = env("AWS_ACCESS_KEY_ID").ok_or("PGSHOT_STORAGE is s3: AWS_ACCESS_KEY_ID is required")?;
                let secret =
                    env("AWS_SECRET_ACCESS_KEY").ok_or("PGSHOT_STORAGE is s3: AWS_SECRET_ACCESS_KEY is required")?;
                let credentials = Keys { access_key: key, secret_key: secret, session_token: env("AWS_SESSION_TOKEN") };
                let endpoint = env("AWS_ENDPOINT_URL").or_else(|| env("AWS_ENDPOINT_URL_S3"));
                ObjectStore::new(endpoint.as_deref(), &region, &bucket, &prefix, credentials).map(Some)
            }
        }
    }

    /// A store in `bucket` under `prefix`; `endpoint` for a server other than AWS (path-style).
    pub fn new(
        endpoint: Option<&str>,
        region: &str,
        bucket: &str,
        prefix: &str,
        keys: Keys,
    ) -> Result<ObjectStore, String> {
        let credentials = match keys.session_token {
            Some(token) => Credentials::new_with_token(keys.access_key, keys.secret_key, token),
            None => Credentials::new(keys.access_key, keys.secret_key),
        };
        let (url, style) = match endpoint {
            Some(e) => (e.to_string(), UrlStyle::Path),
            None => (format!("https://s3.{region}.amazonaws.com"), UrlStyle::VirtualHost),
        };
        let url = Url::parse(&url).map_err(|e| format!("AWS_ENDPOINT_URL {url:?}: {e}"))?;
        let bucket = Bucket::new(url, style, bucket.to_string(), region.to_string())
            .map_err(|e| format!("bucket {bucket:?}: {e}"))?;
        // The bucket is the operator's, not a page's: no proxy variables, no redirects.
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(ObjectStore { bucket, credentials, prefix: prefix.trim_matches('/').to_string(), http })
    }

    /// Where an attempt's output goes: one object per job, attempt and output, so that a late
    /// upload of a fenced-out attempt never overwrites the result of the attempt that completed.
    pub fn key(&self, job_id: &str, attempt: i32, output_id: &str) -> String {
        let name = format!("{job_id}/{attempt}/{output_id}");
        if self.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<Stored, String> {
        let sha256 = Sha256::digest(&bytes).to_vec();
        let size = bytes.len() as i64;
        let url = self.bucket.put_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let resp = self
            .http
            .put(url)
            .header("Content-Type", content_type)
            .body(bytes)
            .send()
            .await
            .map_err(|e| format!("upload of {key}: {}", e.without_url()))?;
        check(resp, "upload", key).await?;
        Ok(Stored { key: key.to_string(), size, sha256 })
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>, String> {
        let url = self.bucket.get_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let resp = self.http.get(url).send().await.map_err(|e| format!("download of {key}: {}", e.without_url()))?;
        let resp = check(resp, "download", key).await?;
        Ok(resp.bytes().await.map_err(|e| format!("download of {key}: {}", e.without_url()))?.to_vec())
    }

    /// Deletes an object; one that is already gone counts as deleted.
    pub async fn delete(&self, key: &str) -> Result<(), String> {
        let url = self.bucket.delete_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let resp = self.http.delete(url).send().await.map_err(|e| format!("delete of {key}: {}", e.without_url()))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        check(resp, "delete", key).await.map(|_| ())
    }

    /// A URL anyone may GET the object with, for `valid_for`.
    pub fn presigned_get(&self, key: &str, valid_for: Duration) -> String {
        self.bucket.get_object(Some(&self.credentials), key).sign(valid_for).to_string()
    }

    /// As [`ObjectStore::presigned_get`], for a browser: the bucket answers with `content_type`,
    /// and anything but an image or a PDF as an attachment (a download), so that an HTML output
    /// served from the bucket's origin is never a page there (the API serves results with a
    /// sandboxing CSP; a bucket cannot).
    pub fn presigned_download(&self, key: &str, valid_for: Duration, content_type: &str) -> String {
        let mut action = self.bucket.get_object(Some(&self.credentials), key);
        let inline = content_type.starts_with("image/") || content_type.starts_with("application/pdf");
        action.query_mut().insert("response-content-type", content_type.to_string());
        if !inline {
            action.query_mut().insert("response-content-disposition", "attachment");
        }
        action.sign(valid_for).to_string()
    }

    /// Creates the bucket if it does not exist (tests and `make run`; production buckets are made
    /// by their owners).
    pub async fn create_bucket(&self) -> Result<(), String> {
        let url = self.bucket.create_bucket(&self.credentials).sign(SIGNED_FOR);
        let resp = self
            .http
            .put(url)
            .header("Content-Length", "0")
            .body(Vec::<u8>::new())
            .send()
            .await
            .map_err(|e| format!("create bucket: {}", e.without_url()))?;
        if resp.status() == reqwest::StatusCode::CONFLICT {
            return Ok(());
        }
        check(resp, "create bucket", self.bucket.name()).await.map(|_| ())
    }
}

async fn check(resp: reqwest::Response, what: &str, key: &str) -> Result<reqwest::Response, String> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let code = body.split("<Code>").nth(1).and_then(|s| s.split('<').next()).unwrap_or("");
    Err(format!("{what} of {key}: {status} {code}").trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_locations_are_read_strictly() {
        assert_eq!(Location::parse(None), Ok(Location::Postgres));
        assert_eq!(Location::parse(Some("postgres")), Ok(Location::Postgres));
        assert_eq!(
            Location::parse(Some("s3://shots/prod/results/")),
            Ok(Location::S3 { bucket: "shots".into(), prefix: "prod/results".into() })
        );
        assert_eq!(Location::parse(Some("s3://shots")), Ok(Location::S3 { bucket: "shots".into(), prefix: "".into() }));
        for bad in ["s3://", "s3://Shots/x", "s3://a/x", "gs://shots", "s3://shots/../x", "/tmp/results"] {
            assert!(Location::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_name_the_job_attempt_and_output_under_the_prefix() {
        let creds = Keys { access_key: "k".into(), secret_key: "s".into(), session_token: None };
        let store =
            ObjectStore::new(Some("http://127.0.0.1:9000"), "us-east-1", "shots", "/a/b/", creds.clone()).unwrap();
        assert_eq!(store.key("k3v9q0m2x7c1b8za", 2, "screenshot"), "a/b/k3v9q0m2x7c1b8za/2/screenshot");
        let bare = ObjectStore::new(Some("http://127.0.0.1:9000"), "us-east-1", "shots", "", creds).unwrap();
        assert_eq!(bare.key("j", 1, "pdf"), "j/1/pdf");
        // Path-style under a custom endpoint, signed for the time asked.
        let url = Url::parse(&store.presigned_get("a/b/j/1/pdf", Duration::from_secs(600))).unwrap();
        assert_eq!(url.path(), "/shots/a/b/j/1/pdf");
        assert!(url.query_pairs().any(|(k, v)| k == "X-Amz-Expires" && v == "600"), "{url}");
        assert!(url.query_pairs().any(|(k, _)| k == "X-Amz-Signature"), "{url}");
    }
}
