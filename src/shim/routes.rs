//! The shim's routes: each turns a request into the library call a binary
//! makes (a group commit of records, `push::run`, `StatusReport::gather`)
//! and its outcome into a status code and a JSON body.

use super::auth;
use super::commit::Commits;
use super::http::{Head, Request, Response};
use super::server::{Handler, Reply};
use crate::error::{Exit, Kind, kind_of};
use crate::push::{self, Outcome, PushOptions, PushSummary, RetryPolicy};
use crate::record::{FieldError, RawValue, RecordInput};
use crate::recording::{Written, conflict_message, defaults_now};
use crate::settings::SecretSource;
use crate::settings::{ForgeSettings, Resolver};
use crate::spool::Spool;
use crate::status::StatusReport;
use serde_json::json;
use std::time::Duration;

/// Everything a request may need.
pub struct App {
    pub spool: Spool,
    /// The group committer of records.
    pub commits: Commits,
    pub node: String,
    pub secret: SecretSource,
    /// The forge settings are resolved at push time, so the shim runs
    /// without a forge configured.
    pub settings: Resolver,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Healthz,
    Status,
    Record,
    PushNow,
}

const ROUTES: &str = "GET /healthz, GET /status, POST /record_usage, POST /admin/push-usage-now";

fn route(path: &str) -> Option<(Route, &'static str)> {
    Some(match path {
        "/healthz" => (Route::Healthz, "GET"),
        "/status" => (Route::Status, "GET"),
        "/record_usage" => (Route::Record, "POST"),
        "/admin/push-usage-now" => (Route::PushNow, "POST"),
        _ => return None,
    })
}

impl Handler for App {
    fn check(&self, head: &Head) -> Result<(), Response> {
        let Some((route, method)) = route(&head.path) else {
            return Err(Response::error(
                404,
                "not-found",
                format!("no such route; the routes are {ROUTES}"),
            ));
        };
        if head.method != method {
            let mut resp = Response::error(
                405,
                "method-not-allowed",
                format!("this route takes {method} only"),
            );
            resp.allow = Some(method);
            return Err(resp);
        }
        if route != Route::Healthz {
            self.authenticate(head)?;
        }
        if route == Route::Record && head.content_length.is_none() {
            return Err(Response::error(
                411,
                "length-required",
                "send the JSON body with a Content-Length header",
            ));
        }
        Ok(())
    }

    fn handle(&self, request: Request, reply: Reply) {
        let resp = match route(&request.head.path).map(|r| r.0) {
            Some(Route::Healthz) => Response::json(200, &json!({"status": "ok"})),
            Some(Route::Status) => self.status(),
            Some(Route::Record) => return self.record(&request, reply),
            Some(Route::PushNow) => self.push_now(),
            None => Response::error(404, "not-found", "no such route"),
        };
        reply.send(resp);
    }

    /// A health check, and a record (validated here, then queued for the
    /// group commit), never wait; the others read the spool or push.
    fn quick(&self, head: &Head) -> bool {
        matches!(route(&head.path), Some((Route::Healthz | Route::Record, _)))
    }
}

fn unauthorized() -> Response {
    Response::error(
        401,
        "unauthorized",
        "missing or wrong X-Hero-Onboarding-Admin-Secret header",
    )
}

impl App {
    fn authenticate(&self, head: &Head) -> Result<(), Response> {
        let secret = self.secret.current().map_err(|e| {
            // Fail closed: nobody gets in while the secret cannot be read.
            Response::error(
                500,
                "error",
                "the admin secret cannot be read; see the shim's log",
            )
            .with_note(format!("{e:#}"))
        })?;
        if head.header_count(auth::HEADER) != 1 {
            return Err(unauthorized());
        }
        match head.header(auth::HEADER) {
            Some(given) if auth::matches(given, &secret) => Ok(()),
            _ => Err(unauthorized()),
        }
    }

    fn status(&self) -> Response {
        match StatusReport::gather(self.spool.root(), &self.node, chrono::Utc::now()) {
            Ok(report) => Response::json(200, &report),
            Err(e) => failure(&e),
        }
    }

    /// Validate the record here; a valid one joins the next group commit,
    /// which answers it once it is durable.
    fn record(&self, request: &Request, reply: Reply) {
        let valid =
            record_input(request).and_then(|input| input.validate(&defaults_now(&self.node)));
        match valid {
            Ok(v) => self.commits.submit(reply, v),
            Err(errors) => reply.send(invalid(&errors)),
        }
    }

    fn push_now(&self) -> Response {
        // The key signs as the hourly job's does (read at each push-now,
        // like the forge settings).
        let settings = self
            .settings
            .forge()
            .and_then(|f| Ok((f, self.settings.signer()?)));
        let (forge, signer) = match settings {
            Ok(f) => f,
            Err(e) => {
                let kind = kind_of(&e);
                return Response::json(
                    http_status(kind),
                    &json!({
                        "status": "not-configured",
                        "outcome": "failed",
                        "exit_code": Exit::Failed(kind).code(),
                        "error": format!("push-now is not available: {e:#}"),
                    }),
                )
                .with_note(format!("{e:#}"));
            }
        };
        // A person is waiting: retries stop after 30 s, not the hourly job's
        // 300, and no request waits longer than that either (a silent forge
        // held push-now, and a SIGTERM, for the client's 120 s).
        let retry = RetryPolicy::for_window(Duration::from_secs(push::PUSH_NOW_RETRY_SECONDS));
        let forge = ForgeSettings {
            request_timeout: Some(retry.window),
            ..forge
        };
        let opts = PushOptions {
            retention_days: None,
            retry,
            ledger_days: None,
            signer,
            ..PushOptions::new(&self.node, forge)
        };
        match push::run(&self.spool, &opts) {
            Ok(summary) => {
                Response::json(push_status(&summary), &summary).with_note(summary.line())
            }
            Err(e) => {
                let kind = kind_of(&e);
                Response::json(
                    http_status(kind),
                    &json!({
                        "outcome": "failed",
                        "exit_code": Exit::Failed(kind).code(),
                        "error": format!("{e:#}"),
                    }),
                )
                .with_note(format!("{e:#}"))
            }
        }
    }
}

/// The record from the body and the `Idempotency-Key` header.
fn record_input(request: &Request) -> Result<RecordInput, Vec<FieldError>> {
    let one = |field: &'static str, problem: String| vec![FieldError { field, problem }];
    let text = std::str::from_utf8(&request.body)
        .map_err(|_| one("body", "not valid JSON: not UTF-8 text".into()))?;
    let mut input = RecordInput::from_json_text(text).map_err(|p| one("body", p))?;
    let head = &request.head;
    if head.header_count("idempotency-key") > 1 {
        return Err(one(
            "idempotency_key",
            "the Idempotency-Key header is given more than once".into(),
        ));
    }
    if let Some(raw) = head.header("idempotency-key") {
        let key = std::str::from_utf8(raw).map_err(|_| {
            one(
                "idempotency_key",
                "the Idempotency-Key header is not text".into(),
            )
        })?;
        match &input.idempotency_key {
            None => input.idempotency_key = Some(RawValue::Str(key.to_string())),
            Some(RawValue::Str(k)) if k == key => {}
            Some(_) => {
                return Err(one(
                    "idempotency_key",
                    "the Idempotency-Key header and the body's idempotency_key differ; \
                     give the key once, or the same in both"
                        .into(),
                ));
            }
        }
    }
    Ok(input)
}

/// The answer to a record of a group commit of `group` records.
pub fn record_answer(written: Result<&Written, &anyhow::Error>, group: usize) -> Response {
    let resp = match written {
        Ok(Written::Recorded(key)) => {
            Response::json(201, &json!({"status": "recorded", "idempotency_key": key}))
        }
        Ok(Written::Duplicate(key)) => {
            Response::json(200, &json!({"status": "duplicate", "idempotency_key": key}))
        }
        Ok(Written::Conflict(key, fields)) => Response::json(
            422,
            &json!({
                "status": "conflict",
                "idempotency_key": key,
                "fields": fields,
                "error": conflict_message(key, fields),
            }),
        ),
        // Its key cannot be checked (a damaged ledger shard or stored
        // record): this record alone is refused.
        Ok(Written::Unchecked(_, why)) => {
            return Response::error(500, "error", why.clone())
                .with_note(format!("group={group}: {why}"));
        }
        Err(e) => return failure(e).with_note(format!("group={group}: {e:#}")),
    };
    resp.with_note(format!("group={group}"))
}

fn invalid(errors: &[FieldError]) -> Response {
    let list: Vec<_> = errors
        .iter()
        .map(|e| json!({"field": e.field, "problem": e.problem}))
        .collect();
    Response::json(400, &json!({"status": "invalid", "errors": list}))
}

/// A library error, answered by its kind.
fn failure(e: &anyhow::Error) -> Response {
    Response::error(http_status(kind_of(e)), "error", format!("{e:#}")).with_note(format!("{e:#}"))
}

/// The answer to a push: 409 while another push holds the lock; 200 when it
/// is done, also with something set aside (65); else by its failure.
pub fn push_status(summary: &PushSummary) -> u16 {
    match (summary.outcome, summary.failure) {
        (Outcome::Locked, _) => 409,
        (_, None | Some(Kind::Data)) => 200,
        (_, Some(kind)) => http_status(kind),
    }
}

/// The one table from a failure's kind to the shim's answer: 503 for what
/// passes (a busy lock, an unreachable forge; nothing lost) or waits for the
/// operator (the forge not configured), 502 when the forge refused the
/// token, 500 for anything else.
fn http_status(kind: Kind) -> u16 {
    match kind {
        Kind::TempFail | Kind::Config => 503,
        Kind::NoPerm => 502,
        _ => 500,
    }
}
