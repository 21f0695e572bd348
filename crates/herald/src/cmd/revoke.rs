//! `herald revoke`: withdraw a notification (or text-to-speech message) by `notifyId`
//! through `POST /v1/{clientId}/messages:revoke`, signing a JWT from a key file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::send::{JwtAlgorithm, PushClientArgs, print_answer, push_client};

/// Arguments of `herald revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The service-account key file (Push Kit JSON layout).
    #[arg(long, env = "HERALD_KEY_FILE", value_name = "FILE")]
    pub key_file: PathBuf,
    /// The server's base URL.
    #[arg(long, env = "HERALD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The app the notification was sent to (revoke's URL names the app, not the project).
    #[arg(long)]
    pub client_id: String,
    /// The `notifyId` the notification was sent with.
    #[arg(long)]
    pub notify_id: i64,
    /// A token it was sent to (repeat for several).
    #[arg(
        long = "token",
        value_name = "TOKEN",
        required = true,
        allow_hyphen_values = true
    )]
    pub tokens: Vec<String>,
    /// The push-type of the message: 0 (notification) or 2 (text-to-speech).
    #[arg(long, default_value_t = 0)]
    pub push_type: u8,
    /// JWT signature algorithm.
    #[arg(long, value_enum, default_value_t = JwtAlgorithm::Ps256)]
    pub alg: JwtAlgorithm,
    /// Always sign a new JWT instead of reusing the cached one.
    #[arg(long)]
    pub no_jwt_cache: bool,
    /// A PEM file of CA certificates to trust for `https://`/`wss://` besides the system's
    /// (e.g. the `ca.pem` of `herald cert create`).
    #[arg(long, env = "HERALD_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Revokes and prints the response. Exits non-zero unless the code is 80000000.
pub async fn run(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let client = push_client(&PushClientArgs {
        key_file: &args.key_file,
        server: &args.server,
        alg: args.alg,
        no_jwt_cache: args.no_jwt_cache,
        ca_file: args.ca_file.as_deref(),
    })?;
    let body = json!({"notifyId": args.notify_id, "token": args.tokens});
    let (status, response) = client
        .revoke(&args.client_id, args.push_type, &body)
        .await
        .with_context(|| format!("revoking on {}", args.server))?;
    print_answer(status, &response)
}
