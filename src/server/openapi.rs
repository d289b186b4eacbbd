//! The OpenAPI 3.1 document of the API, generated: each handler's `#[utoipa::path]` (its doc
//! comment, parameters, body and responses) and the types it takes and answers (`ToSchema`).
//! What is the same for many operations is added here once:
//!
//! - `stamp`: who may call an operation, from the router group it is registered in
//!   (`super::router`): its `x-required-role`, its `security`, a paragraph saying so in its
//!   description, and, for Slack's routes, the signature headers;
//! - `CommonResponses`: the answers that do not come from the handler: 401, 403, 429 and 503
//!   from authentication and the layers around every route, 400 and 413 for a body.
//!
//! [`document`] is the document; the server answers it at `GET /api/v1/openapi.json` and shows
//! it as a page at `GET /api/v1/docs` (`web/docs.html`, which fetches it with the web page's
//! token).

use super::api::meta::html_page;
use super::error::{ErrorBody, error_response};
use crate::policy::Role;
use axum::Extension;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa::Modify;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::{Response as DocResponse, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, Ref,
    RefOr, Required,
};

/// Who may call a group of routes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Access {
    /// Anyone: pages and answers that hold no data.
    Public,
    /// A bearer token with this role or a stronger one.
    Role(Role),
    /// An OpenTelemetry exporter's `ingest` token, or a responder's.
    Ingest,
    /// Slack, by its request signature.
    Slack,
}

impl Access {
    /// The `x-required-role` of its operations.
    pub(crate) fn required_role(self) -> &'static str {
        match self {
            Access::Public => "none",
            Access::Role(r) => crate::incidents::role_str(r),
            Access::Ingest => "responder",
            Access::Slack => "slack-signature",
        }
    }

    /// What its operations' descriptions say about it.
    fn paragraph(self) -> String {
        const LADDER: &str = "(viewer < responder < approver)";
        const UNAUTHENTICATED: &str =
            "Without a valid bearer token: 401; over the rate limit per caller: 429.";
        match self {
            Access::Public => "No authentication: it holds no data.".into(),
            Access::Role(Role::Viewer) => format!(
                "Role: **viewer** or stronger {LADDER}; an ingest token gets 403. {UNAUTHENTICATED}"
            ),
            Access::Role(Role::Responder) => format!(
                "Role: **responder** or stronger {LADDER}; a viewer's or an ingest token gets 403. {UNAUTHENTICATED}"
            ),
            Access::Role(Role::Approver) => format!(
                "Role: **approver** {LADDER}; a viewer's, a responder's or an ingest token gets 403. {UNAUTHENTICATED}"
            ),
            Access::Ingest => format!(
                "Role: **responder** or stronger {LADDER}, or an **ingest** token (`oncall token add NAME --role ingest`), which may do nothing else; a viewer's token gets 403. Without a valid bearer token: 401; over the rate limit per token (checked before the body is read): 429."
            ),
            Access::Slack => "Authenticated by Slack's request signature, not a bearer token: `X-Slack-Signature: v0=<hex HMAC-SHA256 of \"v0:<timestamp>:<raw body>\" with the app's signing secret>` and `X-Slack-Request-Timestamp` (Unix seconds, at most 300 s from the server's clock); a signature is accepted once (replays get 401). When the server has no signing secret (`[slack] signing_secret_env` unset) the Slack routes answer 404. The request is acknowledged at once and handled in the background.".into(),
        }
    }
}

/// Every operation of a path item.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Marks every operation of `doc` (one router group) with who may call it.
pub(crate) fn stamp(doc: &mut OpenApi, access: Access) {
    for item in doc.paths.paths.values_mut() {
        for op in operations_mut(item) {
            let role = access.required_role();
            let ext = ExtensionsBuilder::new()
                .add("x-required-role", role)
                .build();
            match &mut op.extensions {
                Some(e) => e.merge(ext),
                None => op.extensions = Some(ext),
            }
            op.security = Some(match access {
                Access::Public | Access::Slack => vec![],
                Access::Role(_) | Access::Ingest => {
                    vec![SecurityRequirement::new("bearerAuth", Vec::<String>::new())]
                }
            });
            let paragraph = access.paragraph();
            op.description = Some(match op.description.take() {
                Some(d) if !d.trim().is_empty() => format!("{}\n\n{paragraph}", d.trim_end()),
                _ => paragraph,
            });
            if access == Access::Slack {
                let params = op.parameters.get_or_insert_with(Vec::new);
                for name in ["SlackSignature", "SlackRequestTimestamp"] {
                    params.push(RefOr::Ref(Ref::new(format!(
                        "#/components/parameters/{name}"
                    ))));
                }
            }
        }
    }
}

/// A response whose body is the JSON `Error`.
fn error(description: &str) -> DocResponse {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
}

/// A response whose body is plain text.
fn text(description: &str) -> DocResponse {
    ResponseBuilder::new()
        .description(description)
        .content(
            "text/plain",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        )
        .build()
}

fn with_retry_after(r: DocResponse) -> DocResponse {
    let mut r = r;
    r.headers.insert(
        "Retry-After".into(),
        RefOr::Ref(Ref::new("#/components/headers/RetryAfter")),
    );
    r
}

fn shared(name: &str) -> RefOr<DocResponse> {
    RefOr::Ref(Ref::new(format!("#/components/responses/{name}")))
}

/// The answers no handler writes, added to every operation that can get them (unless the
/// operation documents its own): authentication's 401, 403 and 429; the layers' 503 (overload,
/// timeout, the token store down); and for a body, 400 (not the JSON the route takes) and 413
/// (over `[server] max_body_bytes`). Slack's routes answer these in plain text.
pub(crate) struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut OpenApi) {
        for item in doc.paths.paths.values_mut() {
            for op in operations_mut(item) {
                let role = op
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get("x-required-role"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("none")
                    .to_string();
                let json_body = op.request_body.as_ref().is_some_and(|b| match b {
                    RefOr::T(b) => b.content.contains_key("application/json"),
                    RefOr::Ref(_) => true,
                });
                let any_body = op.request_body.is_some();
                let mut add: Vec<(&str, RefOr<DocResponse>)> = vec![];
                match role.as_str() {
                    "none" => add.push(("503", shared("Unavailable"))),
                    "slack-signature" => {
                        add.push(("401", shared("SlackUnauthorized")));
                        add.push(("404", shared("SlackNotConfigured")));
                        add.push(("429", shared("SlackTooManyRequests")));
                        add.push(("503", shared("SlackUnavailable")));
                        if any_body {
                            add.push(("413", shared("SlackTooLarge")));
                        }
                    }
                    _ => {
                        add.push(("401", shared("Unauthorized")));
                        add.push(("403", shared("Forbidden")));
                        add.push(("429", shared("TooManyRequests")));
                        add.push(("503", shared("Unavailable")));
                        if json_body {
                            add.push(("400", shared("BadBody")));
                            add.push(("413", shared("TooLarge")));
                        }
                    }
                }
                for (status, r) in add {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert(r);
                }
            }
        }
        let components = doc.components.get_or_insert_with(Default::default);
        let responses = [
            (
                "Unauthorized",
                ResponseBuilder::new()
                    .description("No bearer token, or a wrong or revoked one.")
                    .header(
                        "WWW-Authenticate",
                        HeaderBuilder::new()
                            .schema(Some(
                                ObjectBuilder::new()
                                    .schema_type(Type::String)
                                    .enum_values(Some(["Bearer"])),
                            ))
                            .description(Some("Always `Bearer`."))
                            .build(),
                    )
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Error")))
                            .build(),
                    )
                    .build(),
            ),
            (
                "Forbidden",
                error(
                    "The token's role is too weak for this route, or it is an ingest token (which may only send traces).",
                ),
            ),
            (
                "TooManyRequests",
                with_retry_after(error(
                    "The caller sent more than `[server] requests_per_s` requests per second; or the request's source address sent `[server] max_auth_failures` wrong tokens within `auth_failure_window_s` (Retry-After: the seconds left of that window); or, where the operation says so, the caller is at a per-caller cap (the message names it and what is open).",
                )),
            ),
            (
                "Unavailable",
                with_retry_after(error(
                    "The server is overloaded (`[server] max_concurrent_requests`), the request took longer than `[server] request_timeout_s` (then with no body), or the incident store is unavailable (also when checking the token).",
                )),
            ),
            (
                "BadBody",
                error(
                    "The body is not the JSON this route takes (a Content-Type other than application/json also answers 400), or a field is over its maximum (the answer names `field` and `limit`); the message says what to send.",
                ),
            ),
            (
                "TooLarge",
                error("The body (after decompression) is over `[server] max_body_bytes`."),
            ),
            (
                "SlackUnauthorized",
                text("Missing, stale, wrong or replayed signature."),
            ),
            (
                "SlackNotConfigured",
                text("Slack is not configured on this server (no signing secret)."),
            ),
            (
                "SlackTooManyRequests",
                with_retry_after(text(
                    "Slack's requests share one rate limit (`[server] requests_per_s`); retry.",
                )),
            ),
            (
                "SlackUnavailable",
                with_retry_after({
                    let mut r = text(
                        "The incident store cannot tell whether the request was seen (Slack retries it), or the server is overloaded (JSON `Error`) or timed out (no body).",
                    );
                    r.content.insert(
                        "application/json".into(),
                        RefOr::T(
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Error")))
                                .build(),
                        ),
                    );
                    r
                }),
            ),
            (
                "SlackTooLarge",
                text("The body is over `[server] max_body_bytes`."),
            ),
        ];
        for (name, r) in responses {
            components.responses.insert(name.into(), RefOr::T(r));
        }
        components.headers.insert(
            "RetryAfter".into(),
            RefOr::T(
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                    .description(Some("Seconds to wait before retrying."))
                    .build(),
            ),
        );
        for (name, header, description, pattern) in [
            (
                "SlackSignature",
                super::slack::HEADER_SIGNATURE,
                "`v0=` and the hex HMAC-SHA256 of `v0:<timestamp>:<raw body>` keyed with the app's signing secret.",
                "^v0=",
            ),
            (
                "SlackRequestTimestamp",
                super::slack::HEADER_TIMESTAMP,
                "Unix seconds; at most 300 s away from the server's clock.",
                "^[0-9]+$",
            ),
        ] {
            let p = ParameterBuilder::new()
                .name(canonical_header(header))
                .parameter_in(ParameterIn::Header)
                .required(Required::True)
                .description(Some(description))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(pattern)),
                ))
                .build();
            components.parameters.insert(name.into(), RefOr::T(p));
        }
    }
}

/// `x-slack-signature` as Slack's documentation writes it: `X-Slack-Signature`.
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join("-")
}

const DESCRIPTION: &str = "The HTTP API of `oncall serve`: incidents investigated by an agent, their event streams, human-approved actions, OTLP trace ingest and the Slack app. This document is generated from the server's own handlers and types; browse it at `/api/v1/docs`.\n\nEvery entry point needs `Authorization: Bearer <token>` except `GET /healthz`, the web page `GET /` and the API's page `GET /api/v1/docs` (which hold no data), and the Slack routes (which verify Slack's request signature instead). Roles, each including the ones before it: viewer < responder < approver; a missing or wrong token gets 401 (with `WWW-Authenticate: Bearer`), a role too weak 403, a caller over `[server] requests_per_s` 429. An `ingest` token (for OpenTelemetry exporters) is not on that ladder: it may only `POST /v1/traces` and gets 403 on every other route. A source address that sent `[server] max_auth_failures` wrong tokens within `auth_failure_window_s` gets 429 on every request until that window ends. A field over its maximum (see the README's Limits) gets 400 with `{\"error\", \"field\", \"limit\"}`; a caller at a per-caller cap (`max_streams_per_user`, `max_investigations_per_user`) gets 429 naming it. Each operation names its role in `x-required-role` (viewer, responder, approver, none, slack-signature). Errors are `{\"error\": \"...\"}` unless an operation says otherwise; 429 and 503 carry Retry-After.";

/// The document's parts that belong to no operation: info, tags, the bearer scheme.
pub(crate) fn base() -> OpenApi {
    let tags = [
        (
            "incidents",
            "Incidents: open, read, follow, talk to, resolve; the post-mortem.",
        ),
        ("approvals", "Action requests and the decisions on them."),
        (
            "investigations",
            "Investigations run on demand, and eval cases recorded live.",
        ),
        ("traces", "OpenTelemetry traces in (OTLP/HTTP)."),
        ("slack", "The Slack app's requests."),
        ("tools", "The tools an investigation calls."),
        ("identity", "Who is calling."),
        ("operations", "Liveness, readiness, metrics."),
        ("meta", "This document."),
        ("web", "The pages a browser opens."),
    ]
    .into_iter()
    .map(|(name, description)| {
        TagBuilder::new()
            .name(name)
            .description(Some(description))
            .build()
    });
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some("A token from `oncall token add` (or printed at the first start of `oncall serve`), or the operator token in the variable `[server] token_env` names (acts as `admin`, approver). Only its sha256 is stored. A token made with `--role ingest` may only send traces (`POST /v1/traces`); every other route answers it 403."))
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("oncall")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .license(Some(
                    LicenseBuilder::new()
                        .name("Apache-2.0")
                        .identifier(Some("Apache-2.0"))
                        .build(),
                ))
                .build(),
        )
        .tags(Some(tags))
        .security(Some([SecurityRequirement::new(
            "bearerAuth",
            Vec::<String>::new(),
        )]))
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme("bearerAuth", SecurityScheme::Http(bearer))
                .build(),
        ))
        .build()
}

/// The document, as the server serves it.
pub fn document() -> OpenApi {
    super::router::assemble(|_, group| group).1
}

/// The document as served: its JSON, written once when the router is built.
pub(crate) struct Served(Result<Bytes, String>);

impl Served {
    pub(crate) fn new(doc: &OpenApi) -> Served {
        Served(
            serde_json::to_vec(doc)
                .map(Bytes::from)
                .map_err(|e| e.to_string()),
        )
    }
}

/// This document
///
/// The OpenAPI 3.1 description of this API, generated from the server's own handlers and types.
/// `GET /api/v1/docs` shows it as a page.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses((status = 200, description = "The document.", body = Object, content_type = "application/json"))
)]
pub(crate) async fn openapi(Extension(doc): Extension<Arc<Served>>) -> Response {
    match &doc.0 {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response(),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorBody::new(format!("the OpenAPI document could not be written: {e}")),
            None,
        ),
    }
}

/// The API's page
///
/// Every operation of this API by tag, with its method, path, required role, description,
/// parameters, request body and responses (schemas shown with their references followed). The
/// page is one self-contained HTML file; it fetches `/api/v1/openapi.json` with the token the
/// web page signed in with (kept in the browser tab), or asks for one.
#[utoipa::path(
    get,
    path = "/api/v1/docs",
    operation_id = "apiDocs",
    tag = "web",
    responses((status = 200, description = "The page.", body = String, content_type = "text/html"))
)]
pub(crate) async fn docs() -> Response {
    html_page(include_str!("web/docs.html"))
}
