//! Server-sent events, framed by `axum::response::sse`, and a response whose
//! events are fed by a channel: the producer is a task of its own, so a client
//! that goes away never cancels a guest call half-way (the producer sees the
//! closed channel after its current call and stops).
//!
//! The wire format is what the OpenAI SDKs and our clients read:
//! `data: <json>\n\n`, `data: [DONE]\n\n`, `event: <name>\nid: <n>\ndata: <json>\n\n`
//! and comments `: <text>\n\n`. JSON from `serde_json` is one line, so a data
//! payload is always one `data:` line.

use std::convert::Infallible;

use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

/// `data: <json>\n\n`
pub fn data(json: &str) -> Event {
    Event::default().data(json)
}

/// `event: <name>\nid: <id>\ndata: <json>\n\n`. The name is one of ours
/// (static, without newlines: axum refuses those).
pub fn event(name: &'static str, id: Option<u64>, json: &str) -> Event {
    let mut e = Event::default().event(name);
    if let Some(id) = id {
        e = e.id(id.to_string());
    }
    e.data(json)
}

/// `: <text>\n\n`, a comment (static, without newlines).
pub fn comment(text: &'static str) -> Event {
    Event::default().comment(text)
}

/// `data: [DONE]\n\n`, the terminator of an OpenAI stream.
pub fn done() -> Event {
    Event::default().data("[DONE]")
}

/// A channel whose receiving end is an SSE response.
pub fn channel(buffer: usize) -> (mpsc::Sender<Event>, Response) {
    let (tx, rx) = mpsc::channel::<Event>(buffer);
    (tx, finish(Sse::new(events(rx)).into_response()))
}

/// One event of a completion stream, already in its wire form.
///
/// Hand-written framing (three `format`s' worth) rather than axum's `Event`:
/// `Sse` sends every `Event` as a body frame of its own (an HTTP chunk each),
/// while the events of one provider chunk — Anthropic's stream opens and
/// closes with three — should leave as one. The JSON is one line (serde_json
/// output), so each payload is exactly one `data:` line, as with `Event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// `data: <json>\n\n`
    pub fn data(json: &str) -> Frame {
        let mut b = BytesMut::with_capacity(json.len() + 8);
        b.extend_from_slice(b"data: ");
        b.extend_from_slice(json.as_bytes());
        b.extend_from_slice(b"\n\n");
        Frame(b.freeze())
    }

    /// `event: <name>\ndata: <json>\n\n` (the name is one of ours: static,
    /// without newlines).
    pub fn event(name: &'static str, json: &str) -> Frame {
        let mut b = BytesMut::with_capacity(name.len() + json.len() + 16);
        b.extend_from_slice(b"event: ");
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(b"\ndata: ");
        b.extend_from_slice(json.as_bytes());
        b.extend_from_slice(b"\n\n");
        Frame(b.freeze())
    }

    /// `data: [DONE]\n\n`, the terminator of an OpenAI stream.
    pub fn done() -> Frame {
        Frame(Bytes::from_static(b"data: [DONE]\n\n"))
    }
}

/// A channel of frame batches whose receiving end is an SSE response: one
/// channel send, one wake-up of the connection task and one body frame per
/// provider chunk, however many events it makes.
pub fn frame_channel(buffer: usize) -> (mpsc::Sender<Vec<Frame>>, Response) {
    let (tx, rx) = mpsc::channel::<Vec<Frame>>(buffer);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let batch = rx.recv().await?;
        let bytes = match <[Frame; 1]>::try_from(batch) {
            Ok([one]) => one.0,
            Err(batch) => {
                let mut b = BytesMut::with_capacity(batch.iter().map(|f| f.0.len()).sum());
                for f in &batch {
                    b.extend_from_slice(&f.0);
                }
                b.freeze()
            }
        };
        Some((Ok::<_, Infallible>(bytes), rx))
    });
    let mut resp = Response::new(axum::body::Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    (tx, finish(resp))
}

/// As [`channel`], with a comment sent whenever the stream has been silent for
/// the keep-alive's interval (so that proxies do not close an idle stream).
pub fn channel_with_keep_alive(
    buffer: usize,
    keep_alive: KeepAlive,
) -> (mpsc::Sender<Event>, Response) {
    let (tx, rx) = mpsc::channel::<Event>(buffer);
    let sse = Sse::new(events(rx)).keep_alive(keep_alive);
    (tx, finish(sse.into_response()))
}

/// The events received, until every sender is gone.
fn events(
    rx: mpsc::Receiver<Event>,
) -> impl futures_util::Stream<Item = Result<Event, Infallible>> + Send + 'static {
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}

/// `Sse` sets `content-type: text/event-stream` and `cache-control: no-cache`.
fn finish(mut resp: Response) -> Response {
    // Tell buffering reverse proxies (nginx) to pass events through at once.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn wire(events: Vec<Event>) -> (Response, Vec<u8>) {
        let (tx, resp) = channel(8);
        for e in events {
            tx.send(e).await.unwrap();
        }
        drop(tx);
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes().to_vec();
        (
            Response::from_parts(parts, axum::body::Body::empty()),
            bytes,
        )
    }

    #[tokio::test]
    async fn frames_leave_as_axum_would_write_them_one_body_frame_per_batch() {
        let (tx, resp) = frame_channel(8);
        tx.send(vec![
            Frame::event("x", "{\"a\":1}"),
            Frame::event("ping", "{}"),
        ])
        .await
        .unwrap();
        tx.send(vec![Frame::data("{}")]).await.unwrap();
        tx.send(vec![Frame::done()]).await.unwrap();
        drop(tx);
        let h = resp.headers().clone();
        let mut body = resp.into_body();
        let mut frames = Vec::new();
        while let Some(f) = body.frame().await {
            frames.push(f.unwrap().into_data().unwrap());
        }
        assert_eq!(
            frames,
            [
                &b"event: x\ndata: {\"a\":1}\n\nevent: ping\ndata: {}\n\n"[..],
                b"data: {}\n\n",
                b"data: [DONE]\n\n"
            ]
        );
        // The same bytes axum's `Sse` writes for the same events.
        let (_, axum_bytes) = wire(vec![event("x", None, "{\"a\":1}"), data("{}"), done()]).await;
        assert_eq!(
            String::from_utf8(axum_bytes).unwrap(),
            "event: x\ndata: {\"a\":1}\n\ndata: {}\n\ndata: [DONE]\n\n"
        );
        assert_eq!(h["content-type"], "text/event-stream");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["x-accel-buffering"], "no");
    }

    #[tokio::test]
    async fn frames_events_as_before() {
        let (resp, bytes) = wire(vec![
            comment("tamma events"),
            data("{}"),
            event("x", Some(3), "{\"a\":1}"),
            event("missed", None, "{\"missed\":2}"),
            done(),
        ])
        .await;
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            ": tamma events\n\n\
             data: {}\n\n\
             event: x\nid: 3\ndata: {\"a\":1}\n\n\
             event: missed\ndata: {\"missed\":2}\n\n\
             data: [DONE]\n\n"
        );
        let h = resp.headers();
        assert_eq!(h["content-type"], "text/event-stream");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["x-accel-buffering"], "no");
    }
}
