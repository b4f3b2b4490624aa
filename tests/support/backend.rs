//! Test backends: small real HTTP servers on 127.0.0.1 whose behaviour is
//! chosen by the request path, so one backend serves every scenario.
//!
//! - `/status/N` answers with status N;
//! - `/sleep/MS` waits MS milliseconds before answering;
//! - `/echo` answers with the request body;
//! - `/bytes/N` answers with N bytes (streamed in 16 KiB chunks);
//! - anything else answers 200 with a JSON description of the request
//!   (`backend`, `method`, `uri`, `version`, `headers`, `body_len`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type TestBody = BoxBody<Bytes, Infallible>;

/// A running backend; stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    /// Connection tasks, aborted with the backend so a "killed" backend
    /// also drops the keep-alive connections vigil holds to it.
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Backend {
    /// Starts a backend on a free port.
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, listener, None)
    }

    /// A backend that answers every request with `status`.
    pub async fn always(name: &str, status: u16) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, listener, Some(status))
    }

    /// Starts a backend on a given address (to bring one back after
    /// killing it). Retries briefly while the port is still in TIME_WAIT.
    pub async fn start_on(name: &str, addr: SocketAddr) -> Backend {
        for _ in 0..50 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            if socket.bind(addr).is_ok() {
                return Self::serve(name, socket.listen(1024).unwrap(), None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot bind backend on {addr}");
    }

    fn serve(name: &str, listener: TcpListener, status: Option<u16>) -> Backend {
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let backend_name = name.to_owned();
        let connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Default::default();
        let tracked = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let name = backend_name.clone();
                let counter = counter.clone();
                let conn = tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        respond(name.clone(), status, req)
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
                tracked.lock().unwrap().push(conn.abort_handle());
            }
        });
        Backend {
            addr,
            name: name.to_owned(),
            requests,
            task,
            connections,
        }
    }

    /// Requests this backend has received.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

async fn respond(
    name: String,
    status: Option<u16>,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_owned();
    if let Some(code) = status {
        return Ok(Response::builder()
            .status(code)
            .header("x-backend", &name)
            .body(full(format!("{name} {code}\n")))
            .unwrap());
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let code = code.parse().unwrap_or(500);
        return Ok(Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header("x-backend", &name)
            .body(full(format!("{name} {code}\n")))
            .unwrap());
    }
    if let Some(ms) = path.strip_prefix("/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    if path == "/echo" {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Ok(Response::builder()
            .header("x-backend", &name)
            .body(full(body))
            .unwrap());
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap_or(0);
        let chunks = (0..n.div_ceil(16 * 1024)).map(move |i| {
            let len = (n - i * 16 * 1024).min(16 * 1024);
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; len])))
        });
        let stream = futures_util::stream::iter(chunks);
        return Ok(Response::builder()
            .header("x-backend", &name)
            .body(StreamBody::new(stream).boxed())
            .unwrap());
    }
    if path == "/nocontent" {
        return Ok(Response::builder()
            .status(204)
            .header("x-backend", &name)
            .body(full(Bytes::new()))
            .unwrap());
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let version = format!("{:?}", req.version());
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::from(v.to_str().unwrap_or("?")),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let description = serde_json::json!({
        "backend": name,
        "method": method,
        "uri": uri,
        "version": version,
        "headers": headers,
        "body_len": body.len(),
    });
    Ok(Response::builder()
        .header("x-backend", &name)
        .header("content-type", "application/json")
        .body(full(description.to_string()))
        .unwrap())
}

fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).boxed()
}

/// A WebSocket echo server (a real handshake, via tungstenite).
pub async fn websocket_echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use futures_util::{SinkExt, StreamExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// A raw backend that reads one request head, answers every request with
/// `response` exactly as given (malformed on purpose, as the test needs)
/// and closes.
pub async fn scripted(response: Vec<u8>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let response = Arc::new(response);
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(&response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
