//! The S3 client for one bucket (github-rgw-rbd.md §2.3, §2.10): aws-sdk-s3 with static
//! credentials, SigV4, path-style addressing, bounded retries with back-off, and checksums only
//! where S3 requires them (radosgw 16 does not understand the SDK's default aws-chunked
//! trailing checksums).
//!
//! Two interceptors: [`RequestCounter`] counts every HTTP attempt (the unit's closing line and
//! the benchmark), and [`RawBody`] keeps the raw XML body of a `GET ?acl` or `GET ?cors`, which
//! the layout stores byte for byte (§2.4).

use super::config::Target;
use crate::config::Secret;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, RuntimeComponents,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Attempts an S3 request gets (1 + retries after 5xx answers and connection errors).
const MAX_ATTEMPTS: u32 = 5;

/// Counts HTTP requests sent (every attempt, retries included).
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<AtomicU64>);

impl RequestCounter {
    /// Requests sent so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "DeltaicRequestCounter"
    }

    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Keeps the raw body of a successful response, for one call (`.customize().interceptor(..)`).
#[derive(Debug, Clone, Default)]
pub struct RawBody(Arc<Mutex<Option<Vec<u8>>>>);

impl RawBody {
    /// The body captured, if the call got a buffered response.
    pub fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().expect("raw body lock").take()
    }
}

impl Intercept for RawBody {
    fn name(&self) -> &'static str {
        "DeltaicRawBody"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        if response.status().is_success()
            && let Some(bytes) = response.body().bytes()
        {
            *self.0.lock().expect("raw body lock") = Some(bytes.to_vec());
        }
        Ok(())
    }
}

/// An S3 client for `target`'s endpoint signing as `access_key`, counting its requests in
/// `counter`. Plain http goes through [`super::transport::QuickAckClient`]; https through the
/// SDK's default client, or with `target.ca_file`, one that also trusts that file's CAs.
///
/// Errors: the CA file is unreadable or holds no usable certificate (see [`super::tls`]).
pub fn build(
    target: &Target,
    access_key: &str,
    secret_key: &Secret,
    counter: &RequestCounter,
) -> anyhow::Result<Client> {
    let credentials = Credentials::new(access_key, secret_key.expose(), None, None, "deltaic");
    let mut config = aws_sdk_s3::Config::builder();
    if target.endpoint.starts_with("http://") {
        config = config.http_client(super::transport::QuickAckClient);
    } else if let Some(ca) = &target.ca_file {
        config = config.http_client(super::tls::https_client(ca)?);
    }
    let config = config
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(target.region.clone()))
        .endpoint_url(&target.endpoint)
        .credentials_provider(credentials)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(500)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(300))
                .build(),
        )
        .retry_classifier(super::tls::NoRetryOnCertificate)
        .interceptor(counter.clone())
        .build();
    Ok(Client::from_conf(config))
}

/// The tokio runtime of one rgw command: enough threads for file writes to overlap requests.
pub fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.clamp(2, 8))
        .enable_all()
        .build()?)
}

/// A one-line description of an SDK error: the S3 error code and message when the server sent
/// one, else the transport failure (with its causes, and what to do about a TLS failure).
pub fn describe<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            match (e.code(), e.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => code.to_string(),
                _ => format!("{e}"),
            }
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            let hint = source.and_then(super::tls::hint);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            if let Some(hint) = hint {
                text.push_str(&format!("; {hint}"));
            }
            text
        }
    }
}

/// For `map_err` on an SDK call: the error `"{what}: "` followed by [`describe`].
pub fn failed<E, R>(
    what: impl std::fmt::Display,
) -> impl FnOnce(aws_sdk_s3::error::SdkError<E, R>) -> anyhow::Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| anyhow::anyhow!("{what}: {}", describe(&e))
}

/// The S3 error code of an SDK error, if the server answered with one.
pub fn error_code<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> Option<&str>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    err.as_service_error().and_then(|e| e.code())
}

/// The HTTP status of an SDK error's response, if there was one.
pub fn error_status<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}
