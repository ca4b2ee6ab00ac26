//! The router's OpenAPI 3.1 document, served at `GET .../openapi.json`.
//!
//! The paths come from the handlers' `#[utoipa::path]` attributes, registered together with
//! the routes (`utoipa_axum::routes!`), so a route cannot be served without being documented;
//! the schemas are derived from the types that serialize the answers. This module only adds
//! what depends on how the router is built: the bearer scheme and `401` on guarded routes, the
//! error body as every operation's default answer, and the server prefix where it is mounted.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, Response, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

/// The document's fixed part; the routes add their paths and schemas to it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "apsched",
        description = "Job management for an apsched scheduler: jobs, their runs and fire \
                       times, the cluster's nodes, live events. Paths are relative to where \
                       the router is mounted.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(super::ErrorBody))
)]
pub(super) struct Base;

/// The name of the bearer scheme in `components.securitySchemes`.
const BEARER: &str = "bearer";

/// Finishes the routes' document: the bearer scheme and `401` on the guarded operations,
/// the error body as every operation's default answer.
pub(super) fn finish(doc: &mut OpenApi, guarded_mutations: bool, guarded_reads: bool) {
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    if guarded_mutations || guarded_reads {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                BEARER,
                SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
    for item in doc.paths.paths.values_mut() {
        for (operation, mutating) in operations(item) {
            let guarded = if mutating {
                guarded_mutations
            } else {
                guarded_reads
            };
            if guarded {
                operation.security =
                    Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                operation.responses.responses.insert(
                    "401".into(),
                    RefOr::T(error_response(
                        "No valid credentials: refused by the guard, before the route runs",
                    )),
                );
            }
            // Any call can meet a scheduler shut down or a store that cannot be reached.
            operation
                .responses
                .responses
                .entry("default".into())
                .or_insert_with(|| {
                    RefOr::T(error_response(
                        "An error: 503 `shutdown`, `closed` or `store`, 500 `runtime` or \
                         `store_schema`",
                    ))
                });
        }
    }
}

/// The operations of a path item, each with whether it changes anything.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&mut Operation, bool)> {
    [
        (item.get.as_mut(), false),
        (item.head.as_mut(), false),
        (item.post.as_mut(), true),
        (item.put.as_mut(), true),
        (item.patch.as_mut(), true),
        (item.delete.as_mut(), true),
    ]
    .into_iter()
    .filter_map(|(operation, mutating)| operation.map(|operation| (operation, mutating)))
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    super::ErrorBody::name(),
                ))))
                .build(),
        )
        .build()
}

/// A [`Trigger`](crate::trigger::Trigger)'s JSON in the schema: an object tagged by `type`,
/// the other fields as that type of trigger has them (see the module docs of
/// [`trigger`](crate::trigger)).
pub(crate) struct TriggerDoc;

impl PartialSchema for TriggerDoc {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "A trigger, tagged by `type`; the other fields depend on the type",
            ))
            .property(
                "type",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .enum_values(Some([
                        "date",
                        "interval",
                        "cron",
                        "calendar_interval",
                        "and",
                        "or",
                    ])),
            )
            .required("type")
            .into()
    }
}

impl ToSchema for TriggerDoc {
    fn name() -> std::borrow::Cow<'static, str> {
        "Trigger".into()
    }
}

/// A `std::time::Duration` as serde writes it: `{"secs": 1, "nanos": 500000000}`.
#[derive(ToSchema)]
#[schema(as = Duration)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct DurationDoc {
    /// Whole seconds.
    secs: u64,
    /// The nanoseconds beyond them.
    nanos: u32,
}

/// A `chrono::TimeDelta` as chrono's serde writes it: `[seconds, nanoseconds]`.
pub(crate) struct TimeDeltaDoc;

impl PartialSchema for TimeDeltaDoc {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    ))),
            )
            .min_items(Some(2))
            .max_items(Some(2))
            .description(Some("`[seconds, nanoseconds]`, negative backwards"))
            .into()
    }
}

impl ToSchema for TimeDeltaDoc {
    fn name() -> std::borrow::Cow<'static, str> {
        "TimeDelta".into()
    }
}
