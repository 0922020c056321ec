//! The HTTP client for plain `http://` endpoints: the SDK's hyper stack with one change, every
//! response segment acknowledged at once (`TCP_QUICKACK` before each read).
//!
//! Why: radosgw's default beast frontend leaves Nagle's algorithm on (`tcp_nodelay=0`) and
//! writes a response's headers and body separately, so the body waits for the client's ACK of
//! the headers, which Linux delays by 40 ms on a kept-alive connection. Every request then
//! costs 40 ms whatever the network; a bucket of small objects spends nearly all its time
//! waiting. Quick ACKs remove the wait without giving up connection reuse. HTTPS endpoints keep
//! the SDK's own client (TLS needs its connector).

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that re-arms quick ACKs before every read.
#[derive(Debug)]
pub struct QuickAckStream(TcpStream);

impl AsyncRead for QuickAckStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Not permanent in Linux: the kernel may leave quick-ACK mode after any segment.
        let _ = rustix::net::sockopt::set_tcp_quickack(&self.0, true);
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Connection for QuickAckStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Opens [`QuickAckStream`]s to `http://` URIs, within an optional connect timeout.
#[derive(Debug, Clone)]
struct Connector {
    connect_timeout: Option<Duration>,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = io::Result<TokioIo<QuickAckStream>>> + Send + 'static>>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<QuickAckStream>;
    type Error = io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> ConnectFuture {
        let limit = self.connect_timeout;
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::other(format!("no host in {uri}")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(80);
            let connect = TcpStream::connect((host.as_str(), port));
            let stream = match limit {
                Some(limit) => tokio::time::timeout(limit, connect).await.map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {host}:{port} timed out"),
                    )
                })??,
                None => connect.await?,
            };
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(QuickAckStream(stream)))
        })
    }
}

/// The client handed to the SDK (`http_client`), for `http://` endpoints.
#[derive(Debug, Clone, Default)]
pub struct QuickAckClient;

impl HttpClient for QuickAckClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let connector = Connector {
            connect_timeout: settings.connect_timeout(),
        };
        SharedHttpConnector::new(Adapter {
            client: Client::builder(TokioExecutor::new()).build(connector),
            read_timeout: settings.read_timeout(),
        })
    }
}

/// One connection pool, speaking the SDK's request and response types.
#[derive(Debug, Clone)]
struct Adapter {
    client: Client<Connector, SdkBody>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for Adapter {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(err) => return HttpConnectorFuture::ready(Err(ConnectorError::user(err.into()))),
        };
        let (client, limit) = (self.client.clone(), self.read_timeout);
        HttpConnectorFuture::new(async move {
            let response = client.request(request);
            let response = match limit {
                Some(limit) => tokio::time::timeout(limit, response).await.map_err(|_| {
                    ConnectorError::timeout("no response within the read timeout".into())
                })?,
                None => response.await,
            }
            .map_err(|err| ConnectorError::io(err.into()))?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|err| ConnectorError::other(err.into(), None))
        })
    }
}
