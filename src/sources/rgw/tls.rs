//! HTTPS endpoints signed by a private CA (`rgw-ca-file`, a bucket's `ca-file`).
//!
//! The PEM file is read and checked when a bucket's client is built, so that a wrong file is an
//! error naming the setting and the file, not a panic inside the SDK (which `expect`s every PEM
//! block it is given to parse). The client is the SDK's default https client (rustls with aws-lc,
//! proxies from the environment) with the file's certificates added to the system roots; host
//! names are still verified. A failed handshake is worded by [`hint`], which points at the
//! setting, and a refused certificate is not retried ([`NoRetryOnCertificate`]): it would fail
//! the same way after seconds of back-off.

use super::config::CaFile;
use anyhow::{Context, anyhow, bail};
use aws_smithy_http_client::ConnectorBuilder;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, Error as TlsError};

/// What a wrong CA file should be replaced with.
const FIX: &str = "point the setting at a PEM file (-----BEGIN CERTIFICATE-----) holding the \
                   certificate of the CA that signed radosgw's certificate";

/// Reads `ca`'s PEM file and checks that every certificate in it is usable as a trust anchor.
///
/// Errors, each naming the key and the file: unreadable, not PEM, no certificate, or a
/// certificate that does not parse.
pub fn read_ca_file(ca: &CaFile) -> anyhow::Result<Vec<u8>> {
    let (key, path) = (&ca.key, ca.path.display());
    let pem =
        std::fs::read(&ca.path).with_context(|| format!("`{key}`: cannot read {path}; {FIX}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("`{key}`: {path} is not a valid PEM file ({e}); {FIX}"))?;
    if certs.is_empty() {
        bail!("`{key}`: {path} holds no PEM certificate; {FIX}");
    }
    let mut roots = rustls::RootCertStore::empty();
    let count = certs.len();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            anyhow!(
                "`{key}`: certificate {} of {count} in {path} is not a usable CA certificate \
                 ({e}); {FIX}",
                i + 1
            )
        })?;
    }
    Ok(pem)
}

/// The SDK's default HTTPS client (rustls with aws-lc, proxies from `HTTPS_PROXY` and
/// `NO_PROXY`) trusting the system roots and the certificates of `ca`'s file (see
/// [`read_ca_file`]).
pub fn https_client(ca: &CaFile) -> anyhow::Result<SharedHttpClient> {
    let pem = read_ca_file(ca)?;
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::default().with_pem_certificate(pem))
        .build()
        .with_context(|| format!("building the TLS context for `{}`", ca.key))?;
    // Built as the SDK builds its default https client (aws-smithy-runtime's
    // `default_https_client`), proxies from the environment included, so that a CA file changes
    // only which certificates are trusted.
    Ok(
        aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, rc| {
            let mut builder = ConnectorBuilder::default()
                .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(context.clone());
            builder.set_connector_settings(settings.cloned());
            if let Some(rc) = rc {
                builder.set_sleep_impl(rc.sleep_impl());
            }
            builder.set_proxy_config(Some(ProxyConfig::from_env()));
            builder.build()
        }),
    )
}

/// What to do about a failed TLS handshake somewhere in `err`'s cause chain, or `None` when the
/// failure is not a TLS one.
pub fn hint(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut handshake = false;
    for e in causes(err) {
        if let Some(tls) = e.downcast_ref::<TlsError>() {
            return Some(match tls {
                TlsError::InvalidCertificate(CertificateError::UnknownIssuer) => {
                    "the TLS certificate of the rgw endpoint is signed by a CA this machine does \
                     not trust: set `rgw-ca-file` (or the bucket's `ca-file`) to that CA's PEM \
                     file, or check the file already set"
                }
                TlsError::InvalidCertificate(CertificateError::Other(other))
                    if matches!(
                        other.0.downcast_ref::<webpki::Error>(),
                        Some(webpki::Error::CaUsedAsEndEntity)
                    ) =>
                {
                    "the rgw endpoint presents a CA certificate (basicConstraints CA:TRUE, as \
                     `openssl req -x509` makes by default) as its own, which is refused even \
                     when `rgw-ca-file` (or the bucket's `ca-file`) holds it: give radosgw a \
                     certificate with CA:FALSE and its host in subjectAltName, signed by a CA \
                     whose certificate that file holds"
                }
                TlsError::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => {
                    "the TLS certificate of the rgw endpoint does not name the endpoint's host: \
                     use a host name (or IP address) the certificate lists in `rgw-server` (or \
                     the bucket's `server`), or reissue the certificate; `rgw-ca-file` does not \
                     change this check"
                }
                _ => TLS_FAILED,
            });
        }
        // The SDK tags a refused handshake "TLS handshake failed" (its type is private).
        handshake |= e.to_string() == "TLS handshake failed";
    }
    handshake.then_some(TLS_FAILED)
}

/// Forbids retrying a request whose TLS handshake failed on radosgw's certificate.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRetryOnCertificate;

impl ClassifyRetry for NoRetryOnCertificate {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let refused = match ctx.output_or_error() {
            Some(Err(e)) => e.as_connector_error().is_some_and(|e| {
                causes(e).any(|c| {
                    matches!(
                        c.downcast_ref::<TlsError>(),
                        Some(TlsError::InvalidCertificate(_))
                    )
                })
            }),
            _ => false,
        };
        if refused {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "DeltaicNoRetryOnCertificate"
    }
}

/// `err` and its causes, looking inside `io::Error`s (whose `source` skips the error they wrap,
/// where hyper-rustls puts the rustls error).
fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |&e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io
            .get_ref()
            .map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => e.source(),
    })
}

const TLS_FAILED: &str = "the TLS handshake with the rgw endpoint failed: check that it serves \
                          https on that port with a valid certificate, and `rgw-ca-file` (or the \
                          bucket's `ca-file`) if its CA is private";

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ca(path: &Path) -> CaFile {
        CaFile {
            path: path.to_owned(),
            key: "settings.rgw-ca-file".into(),
        }
    }

    fn error_of(dir: &Path, text: &[u8]) -> String {
        let path = dir.join("ca.pem");
        std::fs::write(&path, text).unwrap();
        read_ca_file(&ca(&path)).unwrap_err().to_string()
    }

    #[test]
    fn bad_ca_files_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = read_ca_file(&ca(&missing)).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("`settings.rgw-ca-file`: cannot read"),
            "{text}"
        );
        assert!(
            text.contains("nope.pem") && text.contains("No such file"),
            "{text}"
        );
        for (content, needle) in [
            (&b""[..], "holds no PEM certificate"),
            (b"just some text\n", "holds no PEM certificate"),
            (
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                "is not a valid PEM file",
            ),
            (
                // Valid base64, but not DER: the SDK would panic on it.
                b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
                "certificate 1 of 1",
            ),
        ] {
            let err = error_of(dir.path(), content);
            assert!(err.contains(needle), "{err}");
            assert!(
                err.contains("ca.pem") && err.contains("rgw-ca-file"),
                "{err}"
            );
        }
    }

    #[test]
    fn tls_failures_are_recognised_through_the_cause_chain() {
        // As hyper-rustls returns it: rustls's error in an io::Error in an io::Error.
        let unknown = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
        ));
        assert!(hint(&unknown).unwrap().contains("rgw-ca-file"));
        let name = std::io::Error::other(TlsError::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
        assert!(hint(&name).unwrap().contains("does not name"));
        let ca_as_leaf =
            std::io::Error::other(TlsError::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(std::sync::Arc::new(webpki::Error::CaUsedAsEndEntity)),
            )));
        assert!(hint(&ca_as_leaf).unwrap().contains("CA:FALSE"));
        let refused = std::io::Error::other("connection refused");
        assert_eq!(hint(&refused), None);
    }
}
