//! Server-sent events: encoding of events, and a response whose body is fed by a
//! channel (the producer is a task of its own, so a client that goes away never
//! cancels a guest call half-way: the producer sees the closed channel after its
//! current call and stops).

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;

/// `data: <json>\n\n`
pub fn data(json: &str) -> Bytes {
    let mut s = String::with_capacity(json.len() + 8);
    s.push_str("data: ");
    s.push_str(json);
    s.push_str("\n\n");
    Bytes::from(s)
}

/// `event: <name>\nid: <id>\ndata: <json>\n\n`
pub fn event(name: &str, id: Option<u64>, json: &str) -> Bytes {
    let mut s = String::with_capacity(json.len() + name.len() + 32);
    s.push_str("event: ");
    s.push_str(name);
    s.push('\n');
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(&id.to_string());
        s.push('\n');
    }
    s.push_str("data: ");
    s.push_str(json);
    s.push_str("\n\n");
    Bytes::from(s)
}

/// `: <text>\n\n` — a comment, used as a keep-alive.
pub fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}

/// The terminator of an OpenAI stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// A channel whose receiving end is an SSE response body.
pub fn channel(buffer: usize) -> (mpsc::Sender<Bytes>, Response) {
    let (tx, rx) = mpsc::channel::<Bytes>(buffer);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell buffering reverse proxies (nginx) to pass events through at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    (tx, resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_events() {
        assert_eq!(&data("{}")[..], b"data: {}\n\n");
        assert_eq!(
            &event("x", Some(3), "{\"a\":1}")[..],
            b"event: x\nid: 3\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(&comment("ping")[..], b": ping\n\n");
    }
}
