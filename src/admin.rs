//! The admin listener: `/metrics` (Prometheus), `/healthz`, `/status`
//! (JSON), `POST /reload`, `POST /drain` (`?exit=false` to stay up) and
//! `POST /undrain`. It binds its own address (loopback in the
//! examples) and runs on the control runtime, away from client traffic.
//!
//! `vigil reload` and `vigil status` are clients of this API.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the admin API may ask of the process it serves: a narrow handle,
/// so this module knows nothing of the `App` behind it (as
/// linkerd2-proxy's admin gets handles, not the proxy).
pub trait Control: Send + Sync + 'static {
    /// The `/metrics` exposition, scrape-time state included.
    fn render_metrics(&self) -> String;
    /// Ok while serving; the reason when not.
    fn health(&self) -> Result<(), String>;
    /// The `/status` document.
    fn status(&self) -> serde_json::Value;
    /// Re-reads the config; the new generation, or why it was refused.
    fn reload(self: Arc<Self>) -> impl Future<Output = Result<u64, Refused>> + Send;
    /// Drains, gives up the VIPs and stays out of elections; the
    /// connections left.
    fn drain_and_stand_by(self: Arc<Self>) -> impl Future<Output = usize> + Send;
    /// The planned stop (drain, resign, exit).
    fn request_stop(&self);
    /// Back to service after `drain_and_stand_by`.
    fn undrain(&self);
    /// `[admin] debug = true`: the `/debug/*` hooks answer.
    fn debug_enabled(&self) -> bool;
    /// Test hook: die with no cleanup.
    fn crash(&self, abort: bool) -> !;
    /// Test hook: block every worker thread.
    fn stall_workers(&self, how_long: Duration);
}

/// A refused reload, as the API answers it.
#[derive(Debug)]
pub struct Refused {
    /// A mistake in the file (422); anything else the host refused (500).
    pub bad_config: bool,
    pub message: String,
}

/// A running admin listener; stops when dropped.
#[derive(Debug)]
pub struct AdminServer {
    pub addr: SocketAddr,
    pub local: SocketAddr,
    stop: CancellationToken,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The admin address, bound and not yet served: bound before anything
/// else starts, so a second vigil on the same config stops here.
#[derive(Debug)]
pub struct AdminListener {
    addr: SocketAddr,
    listener: std::net::TcpListener,
}

impl AdminListener {
    /// Binds `addr` for this process alone: no SO_REUSEPORT, so a second
    /// vigil cannot share it (and `vigil reload` cannot reach the wrong
    /// one). SO_REUSEADDR only lets a restart bind over TIME_WAIT.
    pub fn bind(addr: SocketAddr) -> std::io::Result<AdminListener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "{e}: another process listens there (another vigil? `ss -ltnp 'sport = :{}'` names it)",
                        addr.port()
                    ),
                )
            } else {
                e
            }
        })?;
        socket.listen(128)?;
        Ok(AdminListener {
            addr,
            listener: socket.into(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl AdminServer {
    /// Binds `addr` and serves the admin API for `app`.
    pub fn start<C: Control>(addr: SocketAddr, app: Weak<C>) -> std::io::Result<AdminServer> {
        AdminServer::serve(AdminListener::bind(addr)?, app)
    }

    /// Serves the admin API for `app` on an address bound earlier.
    pub fn serve<C: Control>(bound: AdminListener, app: Weak<C>) -> std::io::Result<AdminServer> {
        let AdminListener {
            addr,
            listener: std_listener,
        } = bound;
        let listener = TcpListener::from_std(std_listener)?;
        let local = listener.local_addr()?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(pair) => pair,
                        Err(_) => continue,
                    },
                };
                let app = app.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(handle(app, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        tracing::info!(%addr, %local, "admin listening");
        Ok(AdminServer { addr, local, stop })
    }
}

async fn handle<C: Control>(app: Weak<C>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(app) = app.upgrade() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let body = app.render_metrics();
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (&Method::GET, "/healthz") => match app.health() {
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        (&Method::GET, "/status") => {
            let mut r = text(StatusCode::OK, format!("{:#}\n", app.status()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            r
        }
        (&Method::POST, "/reload") => match app.reload().await {
            Ok(generation) => text(
                StatusCode::OK,
                format!("reloaded: config generation {generation}\n"),
            ),
            Err(e) => text(
                if e.bad_config {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                },
                format!(
                    "reload failed, still running the previous config:\n{}\n",
                    e.message
                ),
            ),
        },
        (&Method::POST, "/drain") => {
            let no_exit = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "exit=false" || p == "no-exit"));
            if no_exit {
                let left = app.drain_and_stand_by().await;
                text(
                    StatusCode::OK,
                    format!(
                        "drained ({left} connections left); VIPs released, staying out of VRRP \
                         elections until `vigil undrain`\n"
                    ),
                )
            } else {
                app.request_stop();
                text(
                    StatusCode::ACCEPTED,
                    "draining: connections finish, then the VIPs are released and vigil exits\n",
                )
            }
        }
        (&Method::POST, "/debug/crash") if app.debug_enabled() => {
            app.crash(req.uri().query() == Some("how=abort"))
        }
        (&Method::POST, "/debug/stall") if app.debug_enabled() => {
            let ms: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            app.stall_workers(Duration::from_millis(ms));
            text(
                StatusCode::OK,
                format!("stalling every worker for {ms} ms\n"),
            )
        }
        (&Method::POST, "/undrain") => {
            app.undrain();
            text(StatusCode::OK, "serving; VRRP elections resumed\n")
        }
        (_, "/metrics" | "/healthz" | "/status" | "/reload" | "/drain" | "/undrain") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /healthz, /status, POST /reload, POST /drain, POST /undrain\n",
        ),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A blocking one-shot HTTP/1.1 request to the admin API (for the CLI).
pub fn request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("malformed admin response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed admin status line"))?;
    Ok((status, body.to_owned()))
}
