//! `GET .../events`: the scheduler's [`Event`]s as Server-Sent Events.
//!
//! Each client has its own subscription to the scheduler's broadcast channel, whose capacity
//! bounds what a client can hold back: the core never waits for a client. A client that reads
//! too slowly (or not at all) skips the oldest events and is told how many with an
//! `event: lagged` message, then goes on from the oldest event still held. Nothing here buffers
//! beyond that channel.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::Poll;

use axum::extract::State;
use axum::response::sse::{self, KeepAlive, Sse};
use futures::Stream;

use super::{pairs, ApiResult, ApiState, ErrorBody, Pairs};
use crate::{Error, Event, EventMask, EventStream};

/// The event kinds of a `kinds` parameter (`job_executed,job_error`); every kind without
/// one.
fn mask(pairs: Vec<(String, String)>) -> ApiResult<EventMask> {
    let mut mask = EventMask::NONE;
    for (_, value) in pairs.into_iter().filter(|(key, _)| key == "kinds") {
        for kind in value
            .split(',')
            .map(str::trim)
            .filter(|kind| !kind.is_empty())
        {
            mask |= EventMask::from_kind(kind).ok_or_else(|| Error::InvalidOption {
                option: "kinds",
                value: format!("{kind:?}"),
                reason: format!(
                    "is not an event kind; the kinds are {}",
                    EventMask::kinds().collect::<Vec<_>>().join(", ")
                ),
            })?;
        }
    }
    Ok(if mask.is_empty() {
        EventMask::ALL
    } else {
        mask
    })
}

/// One SSE message: `event: <kind>` with the event's JSON as data.
fn message(event: &Event) -> sse::Event {
    let data = serde_json::to_value(event).unwrap_or_default();
    let kind = data["event"].as_str().unwrap_or("event").to_string();
    sse::Event::default().event(kind).data(data.to_string())
}

/// The events of `events` that `mask` keeps, as SSE messages, with a `lagged` message where
/// the subscription fell behind.
fn messages(
    mut events: EventStream,
    mask: EventMask,
) -> impl Stream<Item = Result<sse::Event, Infallible>> + Send {
    futures::stream::poll_fn(move |cx| loop {
        return Poll::Ready(match std::task::ready!(events.poll_recv(cx)) {
            Some(Ok(event)) if mask.matches(&event) => Some(Ok(message(&event))),
            Some(Ok(_)) => continue,
            Some(Err(missed)) => Some(Ok(sse::Event::default()
                .event("lagged")
                .data(serde_json::json!({ "missed": missed }).to_string()))),
            None => None,
        });
    })
}

/// The scheduler's events, live, from the moment of the request, as Server-Sent Events:
/// each message is `event: <kind>` and `data: <the event's JSON>`. A client that falls more
/// than the scheduler's event capacity behind gets `event: lagged` with `{"missed": n}` and
/// goes on. Comments keep an idle connection alive. It ends after `scheduler_shutdown`.
#[utoipa::path(
    get, path = "/events", tag = "scheduler",
    params(
        ("kinds" = Option<String>, Query,
         description = "Only these kinds, comma-separated (`job_executed,job_error`); default: every kind"),
    ),
    responses(
        (status = 200, description = "The event stream (`text/event-stream`); each message's data is an `Event`, or `{\"missed\": n}` for `event: lagged`",
         content_type = "text/event-stream", body = Event),
        (status = 400, description = "An unknown kind (`invalid_option`, field `kinds`)", body = ErrorBody),
    )
)]
pub(super) async fn events(
    State(api): State<Arc<ApiState>>,
    query: Pairs,
) -> ApiResult<Sse<impl Stream<Item = Result<sse::Event, Infallible>>>> {
    let mask = mask(pairs(query)?)?;
    let events = api.scheduler.subscribe();
    Ok(Sse::new(messages(events, mask)).keep_alive(KeepAlive::default()))
}
