//! The OpenAPI 3.1 document of the API, generated from the handlers and the types they send and
//! take (`utoipa`): `GET /openapi.json` serves it, [`openapi`] returns it.

use std::sync::OnceLock;

use axum::Json;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorKind};
use crate::{live, routes, search};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Event Store HTTP API",
        description = "Appends, paged reads with cursors, stream lists, stats and a live tail \
            over Server-Sent Events, over any event store. With tokens configured, every route \
            but /health, /ready and /openapi.json needs `Authorization: Bearer TOKEN`: GET needs \
            the `read` scope, POST `append`; `admin` may do both. No token or an unknown one is \
            401, a token without the scope 403.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        routes::health,
        routes::ready,
        document,
        routes::append,
        routes::read_stream,
        routes::streams,
        routes::read_log,
        routes::read_event,
        search::search,
        live::live,
        routes::stats,
        search::timeline,
        routes::metrics,
    ),
    components(schemas(ErrorBody, ErrorKind)),
    modifiers(&Bearer),
    tags(
        (name = "streams", description = "Appends and stream reads"),
        (name = "log", description = "The global log: pages, lookups by id, the live tail"),
        (name = "operations", description = "Health, readiness, statistics, metrics, this document"),
    ),
)]
struct ApiDoc;

/// Adds the `bearer` security scheme the operations refer to, and to every operation that needs
/// a token its 401 and 403 answers.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    for (status, what) in [
                        (
                            "401",
                            "No bearer token, or an unknown one (when the server has tokens)",
                        ),
                        ("403", "The token lacks the scope"),
                    ] {
                        op.responses
                            .responses
                            .entry(status.to_owned())
                            .or_insert_with(|| {
                                ResponseBuilder::new()
                                    .description(what)
                                    .content(
                                        "application/json",
                                        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                                    )
                                    .build()
                                    .into()
                            });
                    }
                }
            }
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from the server's token file; its scopes are `read`, `append`, \
                         `admin`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI 3.1 document of the API (the same for every store), as JSON.
pub fn openapi() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    spell_links(&mut doc);
    doc
}

/// utoipa 5 writes a response link's target as `operation_id` / `operation_ref`; OpenAPI spells
/// them `operationId` / `operationRef`.
fn spell_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (wrong, right) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
        ] {
            if let Some(v) = link.remove(wrong) {
                link.insert(right.to_owned(), v);
            }
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        content_type = "application/json")))]
pub(crate) async fn document() -> impl IntoResponse {
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    Json(DOCUMENT.get_or_init(openapi))
}
