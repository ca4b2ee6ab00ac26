//! `GET .../ui`: the dashboard, one HTML page with its script and style compiled into the
//! crate (no build step, nothing fetched from elsewhere).
//!
//! The page only calls the router's own routes, relative to where it is mounted (`jobs`,
//! `events`, ...), with the token the user types as `Authorization: Bearer <token>` on the
//! routes that change things: it has no powers of its own.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// The page, with its script and style inline.
const PAGE: &str = include_str!("dashboard.html");

/// The dashboard: the scheduler's state, its jobs (paged, filtered on the server), each job's
/// recent runs and next fire times, the cluster's nodes, live from `events`; pause, resume,
/// run now and remove with a bearer token. Open it with the trailing path as served
/// (`/scheduler/ui`); its links are relative to the mount point.
#[utoipa::path(
    get, path = "/ui", tag = "dashboard",
    responses((status = 200, description = "The dashboard page", content_type = "text/html", body = String))
)]
pub(super) async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            // The page runs only its own inline script and talks only to its own origin.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'",
            ),
        ],
        Html(PAGE),
    )
        .into_response()
}
