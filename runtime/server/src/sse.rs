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

/// As [`channel`], fed a batch of events at a time: one channel send (and one
/// wake-up of the connection task) per provider chunk rather than per event, so
/// the events of one chunk leave in one write. Anthropic's stream opens and
/// closes with three events each; sent one by one they cost a send, a
/// stall timer and often a write syscall apiece.
pub fn batch_channel(buffer: usize) -> (mpsc::Sender<Vec<Event>>, Response) {
    use futures_util::StreamExt;
    let (tx, rx) = mpsc::channel::<Vec<Event>>(buffer);
    let batches =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let events =
        batches.flat_map(|b| futures_util::stream::iter(b.into_iter().map(Ok::<_, Infallible>)));
    (tx, finish(Sse::new(events).into_response()))
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
