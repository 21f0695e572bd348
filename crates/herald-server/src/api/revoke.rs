//! `POST /v1/{clientId}/messages:revoke`: withdraw notifications (push-type 0) and
//! text-to-speech messages (push-type 2) by `notifyId` (reference §1.3).
//!
//! A revoked message still queued is never delivered; one a device may show gets a
//! revoke command queued like a message, and the device removes it unless it was tapped.

use std::collections::HashSet;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use herald_core::revoke::{ParsedRevoke, parse_revoke};
use herald_core::send::{PushType, Rejection};
use herald_core::token;
use herald_proto::Code;
use herald_proto::push::{TokenFailure, TokenFailures};
use herald_store::Revoke;

use super::{answer, authorization, push_type, read_body};
use crate::ids;
use crate::registry::{Live, LiveBody};
use crate::state::Shared;
use herald_proto::device::ServerFrame;

/// The revoke endpoint.
pub async fn revoke(
    State(app): State<Shared>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = app.clock.now_ms();
    let request_id = ids::request_id(now);
    let outcome = handle(&app, &client_id, &headers, body, now, &request_id).await;
    answer(outcome, &request_id)
}

fn internal(e: herald_store::StoreError) -> Rejection {
    tracing::error!(error = %e, "The store failed during a revoke.");
    Rejection::new(Code::InnerError, Code::InnerError.default_msg())
}

async fn handle(
    app: &Shared,
    client_id: &str,
    headers: &HeaderMap,
    body: Body,
    now: i64,
    request_id: &str,
) -> Result<(Code, String), Rejection> {
    let principal = app
        .jwt
        .principal(authorization(headers))
        .await
        .map_err(|e| Rejection::new(e.code(), e.code().default_msg()))?;
    if !app
        .projects
        .push_enabled(
            app.store.as_ref(),
            &principal.project_id,
            app.caches_trusted(),
        )
        .await
        .map_err(internal)?
    {
        return Err(Rejection::new(
            Code::NoPermission,
            Code::NoPermission.default_msg(),
        ));
    }
    let push_type = push_type(headers)?;
    if !matches!(push_type, PushType::Alert | PushType::Voice) {
        return Err(Rejection::payload(
            "only notification (0) and text-to-speech (2) messages can be revoked",
        ));
    }
    let owner = app
        .apps
        .get(app.store.as_ref(), client_id)
        .await
        .map_err(internal)?;
    if owner.is_none_or(|a| a.project_id != principal.project_id) {
        return Err(Rejection::new(
            Code::NoRevokePermission,
            Code::NoRevokePermission.default_msg(),
        ));
    }

    let bytes = read_body(body).await?;
    let ParsedRevoke { notify_id, tokens } = parse_revoke(&bytes)?;

    let mut seen = HashSet::new();
    let tokens: Vec<&str> = tokens
        .iter()
        .map(String::as_str)
        .filter(|t| seen.insert(*t))
        .collect();
    let records = app
        .tokens
        .resolve(app.store.as_ref(), &tokens, app.caches_trusted())
        .await
        .map_err(internal)?;
    let apps: HashSet<&str> = records
        .iter()
        .flatten()
        .map(|r| r.client_id.as_str())
        .collect();
    if apps.len() > 1 {
        return Err(Rejection::new(
            Code::TokenAppCountExceeded,
            Code::TokenAppCountExceeded.default_msg(),
        ));
    }
    if apps.iter().any(|a| *a != client_id) {
        return Err(Rejection::new(
            Code::TokenAppMismatch,
            Code::TokenAppMismatch.default_msg(),
        ));
    }

    // As in a send: a malformed token fails (`tokenFormatError`); a well-formed one
    // Herald does not know (uninstalled app, deleted token) is accepted, with nothing
    // to withdraw.
    let mut failures = TokenFailures::default();
    let mut targets = Vec::new();
    for (token, record) in tokens.iter().zip(records) {
        match record {
            Some(r) => {
                failures.success += 1;
                targets.push(std::sync::Arc::unwrap_or_clone(r));
            }
            None if token::is_well_formed(token) => failures.success += 1,
            None => failures.add(TokenFailure::TokenFormatError, *token),
        }
    }
    if failures.success == 0 {
        return Ok((Code::AllTokensInvalid, failures.to_msg()));
    }
    if targets.is_empty() {
        tracing::info!(%client_id, %request_id, notify_id, "Revoke accepted; no token is known, nothing to withdraw.");
        return Ok(revoke_answer(&failures));
    }
    let result = app
        .store
        .revoke(Revoke {
            request_id: request_id.to_owned(),
            project_id: principal.project_id.clone(),
            push_type: push_type.as_u8(),
            notify_id,
            tokens: targets,
            now,
        })
        .await
        .map_err(internal)?;
    let mut elsewhere = Vec::new();
    for stored in result.commands {
        if app.bus.is_some() && !app.registry.is_connected(stored.device) {
            elsewhere.push(stored.device);
        }
        app.registry.deliver(
            stored.device,
            Live {
                id: stored.id,
                body: LiveBody::Frame(ServerFrame::Revoke {
                    id: stored.id.to_string(),
                    client_id: stored.client_id,
                    token: stored.token,
                    notify_id: stored.notify_id.unwrap_or(notify_id),
                }),
                urgent: false,
            },
        );
    }
    // Devices not connected here may be connected to another node: tell the others.
    if let Some(bus) = &app.bus {
        bus.announce(elsewhere);
    }
    let withdrawn = result.revoked.len() + result.withdrawn.len();
    metrics::counter!("herald_messages_revoked_total").increment(withdrawn as u64);
    tracing::info!(%client_id, %request_id, notify_id, queued = result.revoked.len(), shown = result.withdrawn.len(), "Revoke accepted.");
    Ok(revoke_answer(&failures))
}

/// `80000000`, or `80100020` with the failed tokens in `msg`.
fn revoke_answer(failures: &TokenFailures) -> (Code, String) {
    if failures.is_empty() {
        (Code::Success, Code::Success.default_msg().to_owned())
    } else {
        (Code::RevokePartialSuccess, failures.to_msg())
    }
}
