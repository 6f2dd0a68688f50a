//! A small HTTP/1.1 client over one keep-alive connection, for the server's tests
//! and the gateway benchmark (not a general-purpose client).

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HeaderMap;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A response whose body is read as it arrives.
pub struct Streaming {
    pub status: u16,
    pub headers: HeaderMap,
    body: Incoming,
    buf: BytesMut,
}

impl Streaming {
    /// The next SSE event's `data:` payload (`None` at the end of the body).
    /// Comments and other fields are skipped.
    pub async fn next_data(&mut self) -> Option<Result<String, String>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\n\n") {
                let raw = self.buf.split_to(pos + 2);
                let text = String::from_utf8_lossy(&raw[..pos]).into_owned();
                let data: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some(Ok(data.join("\n")));
            }
            match self.body.frame().await {
                None => return None,
                Some(Err(e)) => return Some(Err(e.to_string())),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
            }
        }
    }

    /// The next whole SSE event (all its lines), `None` at the end.
    pub async fn next_event(&mut self) -> Option<Result<String, String>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\n\n") {
                let raw = self.buf.split_to(pos + 2);
                return Some(Ok(String::from_utf8_lossy(&raw[..pos]).into_owned()));
            }
            match self.body.frame().await {
                None => return None,
                Some(Err(e)) => return Some(Err(e.to_string())),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
            }
        }
    }

    /// Every remaining `data:` payload, and whether the body ended cleanly.
    pub async fn collect_data(&mut self) -> (Vec<String>, Result<(), String>) {
        let mut out = Vec::new();
        loop {
            match self.next_data().await {
                None => return (out, Ok(())),
                Some(Ok(d)) => out.push(d),
                Some(Err(e)) => return (out, Err(e)),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One keep-alive connection.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { addr, sender })
    }

    fn build(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        let has_body = body.is_some();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if has_body
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            b = b.header("content-type", "application/json");
        }
        b.body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("valid request")
    }

    /// Send a request; wait for the whole response.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> std::io::Result<Response> {
        let mut s = self.send_streaming(method, path, headers, body).await?;
        let mut buf = BytesMut::new();
        while let Some(f) = s.body.frame().await {
            let f = f.map_err(std::io::Error::other)?;
            if let Ok(d) = f.into_data() {
                buf.extend_from_slice(&d);
            }
        }
        Ok(Response {
            status: s.status,
            headers: s.headers,
            body: buf.freeze(),
        })
    }

    /// Send a request; return once the headers arrived.
    pub async fn send_streaming(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> std::io::Result<Streaming> {
        self.sender.ready().await.map_err(std::io::Error::other)?;
        let req = self.build(method, path, headers, body);
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(std::io::Error::other)?;
        let (parts, body) = resp.into_parts();
        Ok(Streaming {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            buf: BytesMut::new(),
        })
    }
}

/// One request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> std::io::Result<Response> {
    Conn::connect(addr)
        .await?
        .send(method, path, headers, body)
        .await
}

/// `GET path`
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    request(addr, "GET", path, &[], None).await
}

/// `POST path` with a JSON body.
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> std::io::Result<Response> {
    request(addr, "POST", path, &[], Some(body.to_string().into_bytes())).await
}

/// `POST path` with a JSON body; the response is read as it streams.
pub async fn post_streaming(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> std::io::Result<Streaming> {
    Conn::connect(addr)
        .await?
        .send_streaming("POST", path, &[], Some(body.to_string().into_bytes()))
        .await
}
