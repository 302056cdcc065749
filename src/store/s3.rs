//! S3 and S3-compatible servers (MinIO, s3s-fs, ...) through aws-sdk-s3.
//!
//! Configuration comes from the standard AWS environment and config files (AWS_ENDPOINT_URL,
//! AWS_REGION, AWS_PROFILE, the credentials chain), with per-store overrides in the URI query:
//! `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&path_style=true&region=us-east-1`.
//! `TIERDEX_S3_PATH_STYLE=true` turns on path-style addressing for every S3 store.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use super::{
    BlobStore, Expected, MULTIPART_PART_SIZE, MULTIPART_THRESHOLD, ObjectMeta, StoreError,
    StoreErrorKind, StoreResult, check_key, check_range,
};

/// Requests in flight per store: the SDK's connection pool has no cap of its own.
const DEFAULT_MAX_CONCURRENCY: usize = 64;
/// Parts of one multipart upload sent at once.
const UPLOAD_PART_CONCURRENCY: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    pub max_concurrency: usize,
    /// Do not retry a refused or reset connection: for a serving node, which answers degraded
    /// at once and has its own breaker. Builders and tools keep the SDK's retries.
    pub fail_fast: bool,
}

impl S3Options {
    /// Parses what follows `s3://`.
    pub fn parse(rest: &str) -> Result<S3Options, String> {
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err("missing bucket: use s3://bucket/prefix".into());
        }
        let mut options = S3Options {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: None,
            region: None,
            path_style: std::env::var("TIERDEX_S3_PATH_STYLE")
                .map(|value| matches!(value.as_str(), "1" | "true" | "yes"))
                .unwrap_or(false),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            fail_fast: false,
        };
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "endpoint" => options.endpoint = Some(value.to_string()),
                "region" => options.region = Some(value.to_string()),
                "path_style" => {
                    options.path_style = match value {
                        "" | "1" | "true" | "yes" => true,
                        "0" | "false" | "no" => false,
                        other => {
                            return Err(format!(
                                "path_style: expected true or false, found `{other}`"
                            ));
                        }
                    }
                }
                "fail_fast" => options.fail_fast = matches!(value, "" | "1" | "true" | "yes"),
                "max_concurrency" => {
                    options.max_concurrency =
                        value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                            format!("max_concurrency: expected a positive integer, found `{value}`")
                        })?
                }
                other => {
                    return Err(format!(
                        "unknown option `{other}` (known: endpoint, region, path_style, max_concurrency, fail_fast)"
                    ));
                }
            }
        }
        Ok(options)
    }
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    uri: String,
    permits: Arc<Semaphore>,
}

impl S3Store {
    pub async fn connect(options: S3Options) -> StoreResult<S3Store> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(endpoint) = &options.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let http_client = super::quick_ack::quick_ack_http_client().map_err(|err| {
            StoreError::new(
                StoreErrorKind::Refused,
                "connect",
                format!("s3://{}", options.bucket),
                format!("no root certificates for TLS: {err}"),
            )
        })?;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .http_client(http_client)
            .force_path_style(options.path_style)
            // Integrity is ours (CRC32C per file and per block); the SDK's default request
            // checksums and aws-chunked uploads are refused by some S3-compatible servers.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .build(),
            );
        if options.fail_fast {
            config = config.retry_classifier(FailFastOnRefusal);
        }
        if shared.region().is_none() {
            // S3-compatible servers ignore the region, but request signing needs one.
            config = config.region(Region::new("us-east-1"));
        }
        let uri = if options.prefix.is_empty() {
            format!("s3://{}", options.bucket)
        } else {
            format!("s3://{}/{}", options.bucket, options.prefix)
        };
        Ok(S3Store {
            client: Client::from_conf(config.build()),
            bucket: options.bucket,
            prefix: options.prefix,
            uri,
            permits: Arc::new(Semaphore::new(options.max_concurrency)),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn object(&self, key: &str) -> String {
        format!("{}/{key}", self.uri)
    }

    /// A whole object and its ETag, errors reported as `op`; the request slot is held until the
    /// body is read.
    async fn whole_object(
        &self,
        op: &'static str,
        key: &str,
    ) -> StoreResult<(Option<String>, Bytes)> {
        check_key(op, &self.uri, key)?;
        let _permit = self.permit().await;
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|err| sdk_error(op, self.object(key), err))?;
        let tag = response.e_tag.clone();
        let data = read_body(response.body, op, self.object(key), None).await?;
        Ok((tag, data))
    }

    async fn permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.permits.acquire().await.expect("never closed")
    }

    async fn put_multipart(&self, key: &str, local: &Path, size: u64) -> StoreResult<()> {
        let object = self.object(key);
        let full_key = self.full_key(key);
        let created = {
            let _permit = self.permit().await;
            self.client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&full_key)
                .send()
                .await
                .map_err(|err| sdk_error("put_file", object.clone(), err))?
        };
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let part_count = size.div_ceil(MULTIPART_PART_SIZE);
        let uploaded = futures::stream::iter(0..part_count)
            .map(|part| {
                let local = local.to_path_buf();
                let object = object.clone();
                let full_key = full_key.clone();
                let upload_id = upload_id.clone();
                async move {
                    let start = part * MULTIPART_PART_SIZE;
                    let end = (start + MULTIPART_PART_SIZE).min(size);
                    let data = read_file_range(local, start..end).await.map_err(|err| {
                        StoreError::new(
                            StoreErrorKind::Io,
                            "put_file",
                            object.clone(),
                            format!("reading the local file: {err}"),
                        )
                        .with_range(start..end)
                    })?;
                    let _permit = self.permit().await;
                    let response = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(&full_key)
                        .upload_id(&upload_id)
                        .part_number(part as i32 + 1)
                        .body(ByteStream::from(data))
                        .send()
                        .await
                        .map_err(|err| {
                            sdk_error("put_file", object.clone(), err).with_range(start..end)
                        })?;
                    Ok::<_, StoreError>(
                        CompletedPart::builder()
                            .part_number(part as i32 + 1)
                            .set_e_tag(response.e_tag().map(str::to_string))
                            .build(),
                    )
                }
            })
            .buffered(UPLOAD_PART_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await;
        let completed = match uploaded {
            Ok(parts) => {
                let _permit = self.permit().await;
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full_key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|err| sdk_error("put_file", object.clone(), err))
            }
            Err(err) => Err(err),
        };
        if completed.is_err() {
            // Parts of an abandoned upload are billed until aborted.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full_key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        completed
    }
}

/// A response's whole body; a failure while reading it is a storage failure of `op`.
async fn read_body(
    body: ByteStream,
    op: &'static str,
    object: String,
    range: Option<Range<u64>>,
) -> StoreResult<Bytes> {
    match body.collect().await {
        Ok(data) => Ok(data.into_bytes()),
        Err(err) => {
            let failure = StoreError::new(
                StoreErrorKind::Unavailable,
                op,
                object,
                "reading the response body failed",
            );
            Err(match range {
                Some(range) => failure.with_range(range),
                None => failure,
            }
            .with_source(err))
        }
    }
}

/// A connection the server refused or reset is not retried by the SDK: a store that is down
/// answers at once (the node serves degraded answers and its circuit breaker counts the
/// failure), instead of after the SDK's backoff. Timeouts and 5xx answers are retried as
/// before.
#[derive(Debug)]
struct FailFastOnRefusal;

impl aws_smithy_runtime_api::client::retries::classifiers::ClassifyRetry for FailFastOnRefusal {
    fn classify_retry(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::InterceptorContext,
    ) -> aws_smithy_runtime_api::client::retries::classifiers::RetryAction {
        use aws_smithy_runtime_api::client::retries::classifiers::RetryAction;
        let Some(Err(err)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let Some(connector) = err.as_connector_error() else {
            return RetryAction::NoActionIndicated;
        };
        let refused = std::iter::successors(
            Some(connector as &(dyn std::error::Error + 'static)),
            |err| err.source(),
        )
        .filter_map(|err| err.downcast_ref::<std::io::Error>())
        .any(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
            )
        });
        if refused {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "fail fast on a refused or reset connection"
    }
}

async fn read_file_range(path: PathBuf, range: Range<u64>) -> std::io::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(&path)?;
        let mut buffer = vec![0u8; (range.end - range.start) as usize];
        file.read_exact_at(&mut buffer, range.start)?;
        Ok(Bytes::from(buffer))
    })
    .await
    .map_err(std::io::Error::other)?
}

fn sdk_error<E, R>(op: &'static str, object: String, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static + HttpStatus,
{
    let status = err.raw_response().map(HttpStatus::status);
    let code = err.code().map(str::to_string);
    let kind = match (status, code.as_deref()) {
        (_, Some("NoSuchBucket")) => StoreErrorKind::Refused,
        (_, Some("PreconditionFailed" | "ConditionalRequestConflict")) | (Some(412), _) => {
            StoreErrorKind::Conflict
        }
        (_, Some("NotImplemented")) | (Some(501), _) => StoreErrorKind::Unsupported,
        (_, Some("NoSuchKey" | "NotFound")) | (Some(404), _) => StoreErrorKind::NotFound,
        (_, Some("InvalidRange")) | (Some(416), _) => StoreErrorKind::InvalidRange,
        (Some(400 | 401 | 403 | 405), _) => StoreErrorKind::Refused,
        _ => StoreErrorKind::Unavailable,
    };
    let message = match (&code, err.message(), status) {
        (Some(code), Some(message), _) => format!("{code}: {message}"),
        (Some(code), None, _) => code.clone(),
        (None, _, Some(status)) => format!("HTTP {status}"),
        (None, _, None) => match &err {
            SdkError::TimeoutError(_) => "timed out".to_string(),
            SdkError::DispatchFailure(_) => {
                "request could not be sent (connection failed)".to_string()
            }
            _ => "request failed".to_string(),
        },
    };
    StoreError::new(kind, op, object, message).with_source(err)
}

/// The HTTP status of a raw response, whatever the SDK's response type.
trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

#[async_trait]
impl BlobStore for S3Store {
    fn uri(&self) -> &str {
        &self.uri
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        check_key("get_range", &self.uri, key)?;
        check_range("get_range", || self.object(key), &range)?;
        if range.start == range.end {
            return Ok(Bytes::new());
        }
        let _permit = self.permit().await;
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|err| {
                sdk_error("get_range", self.object(key), err).with_range(range.clone())
            })?;
        let data = read_body(
            response.body,
            "get_range",
            self.object(key),
            Some(range.clone()),
        )
        .await?;
        if data.len() as u64 != range.end - range.start {
            // A server answers a range that overlaps the end with the bytes it has.
            return Err(StoreError::new(
                StoreErrorKind::InvalidRange,
                "get_range",
                self.object(key),
                format!(
                    "range reaches past the end of the object (got {} bytes)",
                    data.len()
                ),
            )
            .with_range(range));
        }
        Ok(data)
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let (_, data) = self.whole_object("get", key).await?;
        Ok(data)
    }

    async fn size(&self, key: &str) -> StoreResult<u64> {
        check_key("size", &self.uri, key)?;
        let _permit = self.permit().await;
        let response = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|err| sdk_error("size", self.object(key), err))?;
        Ok(response.content_length().unwrap_or(0).max(0) as u64)
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        check_key("put", &self.uri, key)?;
        let _permit = self.permit().await;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|err| sdk_error("put", self.object(key), err))?;
        Ok(())
    }

    async fn get_tagged(&self, key: &str) -> StoreResult<Option<(Bytes, String)>> {
        let (tag, data) = match self.whole_object("get_tagged", key).await {
            Ok(found) => found,
            Err(err) if err.kind() == StoreErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let Some(tag) = tag else {
            return Err(StoreError::new(
                StoreErrorKind::Unsupported,
                "get_tagged",
                self.object(key),
                "the server sent no ETag",
            ));
        };
        Ok(Some((data, tag)))
    }

    /// `If-None-Match: *` or `If-Match: <ETag>` (S3 conditional writes). A server that ignores
    /// these headers cannot be told apart from one that honours them: docs/operations.md.
    async fn put_if(&self, key: &str, data: Bytes, expected: &Expected) -> StoreResult<()> {
        check_key("put_if", &self.uri, key)?;
        let _permit = self.permit().await;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data));
        let request = match expected {
            Expected::Absent => request.if_none_match("*"),
            Expected::Tag(tag) => request.if_match(tag),
        };
        request
            .send()
            .await
            .map_err(|err| sdk_error("put_if", self.object(key), err))?;
        Ok(())
    }

    async fn put_file(&self, key: &str, local: &Path) -> StoreResult<()> {
        check_key("put_file", &self.uri, key)?;
        let size = tokio::fs::metadata(local)
            .await
            .map_err(|err| {
                StoreError::new(
                    StoreErrorKind::Io,
                    "put_file",
                    self.object(key),
                    format!("reading {}: {err}", local.display()),
                )
            })?
            .len();
        if size > MULTIPART_THRESHOLD {
            return self.put_multipart(key, local, size).await;
        }
        let body = ByteStream::from_path(local).await.map_err(|err| {
            StoreError::new(
                StoreErrorKind::Io,
                "put_file",
                self.object(key),
                format!("reading {}: {err}", local.display()),
            )
        })?;
        let _permit = self.permit().await;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(body)
            .send()
            .await
            .map_err(|err| sdk_error("put_file", self.object(key), err))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let full_prefix = self.full_key(prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut found = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        while let Some(page) = {
            let _permit = self.permit().await;
            pages.next().await
        } {
            let page = page.map_err(|err| sdk_error("list", self.object(prefix), err))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if key.len() < strip {
                    continue;
                }
                found.push(ObjectMeta {
                    key: key[strip..].to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                });
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        check_key("delete", &self.uri, key)?;
        let _permit = self.permit().await;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|err| sdk_error("delete", self.object(key), err))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uri_options() {
        let options = S3Options::parse(
            "bucket/a/b/?endpoint=http://127.0.0.1:9000&path_style=true&region=eu-west-1",
        )
        .unwrap();
        assert_eq!(options.bucket, "bucket");
        assert_eq!(options.prefix, "a/b");
        assert_eq!(options.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(options.region.as_deref(), Some("eu-west-1"));
        assert!(options.path_style);
        assert!(S3Options::parse("/x").is_err());
        assert!(
            S3Options::parse("b?colour=red")
                .unwrap_err()
                .contains("colour")
        );
    }
}
