//! `herald send`: sign a JWT from a service-account key file and send one Push Kit message.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use herald_client::sender::{JwtDiskCache, JwtSigner, PushClient, SigningAlgorithm, load_key_file};
use herald_proto::Code;
use serde_json::{Map, Value, json};

/// Arguments of `herald send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The service-account key file (Push Kit JSON layout).
    #[arg(long, env = "HERALD_KEY_FILE", value_name = "FILE")]
    pub key_file: PathBuf,
    /// The server's base URL.
    #[arg(long, env = "HERALD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A push token to send to (repeat for several).
    #[arg(
        long = "token",
        value_name = "TOKEN",
        required_unless_present = "json",
        allow_hyphen_values = true
    )]
    pub tokens: Vec<String>,
    /// Notification title.
    #[arg(long)]
    pub title: Option<String>,
    /// Notification body.
    #[arg(long)]
    pub body: Option<String>,
    /// Notification category (MARKETING, IM, WORK, …).
    #[arg(long, default_value = "MARKETING")]
    pub category: String,
    /// A JSON object handed to the app when the notification is tapped (`clickAction.data`).
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    pub data: Option<Map<String, Value>>,
    /// `notifyId`: a later notification with the same id replaces this one.
    #[arg(long, value_name = "N")]
    pub notify_id: Option<i64>,
    /// Time to live in seconds (`pushOptions.ttl`).
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<u64>,
    /// Send as a test message (`pushOptions.testMessage`).
    #[arg(long)]
    pub test: bool,
    /// The `push-type` header (0 = notification).
    #[arg(long, default_value_t = 0)]
    pub push_type: u8,
    /// Send this file's JSON as the request body, as is ("-" reads stdin).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["tokens", "title", "body", "data", "notify_id", "ttl", "test"]
    )]
    pub json: Option<PathBuf>,
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

/// `--alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JwtAlgorithm {
    Ps256,
    Rs256,
}

/// Sends the message and prints the response. Exits non-zero unless the code is 80000000.
pub async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let body = match &args.json {
        Some(path) => read_body(path)?,
        None => notification_body(&args),
    };
    let client = push_client(&PushClientArgs {
        key_file: &args.key_file,
        server: &args.server,
        alg: args.alg,
        no_jwt_cache: args.no_jwt_cache,
        ca_file: args.ca_file.as_deref(),
    })?;
    let (status, response) = client
        .send(args.push_type, &body)
        .await
        .with_context(|| format!("sending to {}", args.server))?;
    print_answer(status, &response)
}

/// What `push_client` needs from the flags `herald send` and `herald revoke` share.
#[derive(Debug)]
pub struct PushClientArgs<'a> {
    pub key_file: &'a std::path::Path,
    pub server: &'a str,
    pub alg: JwtAlgorithm,
    pub no_jwt_cache: bool,
    pub ca_file: Option<&'a std::path::Path>,
}

/// A Push Kit client for `server` signing with the key file's service account (the JWT
/// is reused from the on-disk cache while it is fresh, unless `no_jwt_cache`), trusting
/// `ca_file` besides the system's roots.
pub fn push_client(args: &PushClientArgs<'_>) -> anyhow::Result<PushClient> {
    let PushClientArgs {
        key_file,
        server,
        alg,
        no_jwt_cache,
        ca_file,
    } = *args;
    let key_file = load_key_file(key_file)?;
    let mut signer = JwtSigner::new(&key_file)?.with_algorithm(match alg {
        JwtAlgorithm::Ps256 => SigningAlgorithm::Ps256,
        JwtAlgorithm::Rs256 => SigningAlgorithm::Rs256,
    });
    if !no_jwt_cache && let Some(cache) = JwtDiskCache::default_for(&key_file.key_id) {
        signer = signer.with_disk_cache(cache);
    }
    let ca = super::load_ca(ca_file)?;
    Ok(PushClient::trusting(server, signer, ca.as_ref())?)
}

/// Print Push Kit's answer; success only for `80000000`.
pub fn print_answer(
    status: u16,
    response: &herald_proto::push::ApiResponse,
) -> anyhow::Result<ExitCode> {
    if !(200..300).contains(&status) {
        eprintln!("HTTP {status}");
    }
    println!("{}", serde_json::to_string_pretty(response)?);
    Ok(if response.code == Code::Success.as_str() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The Push Kit body of a notification (push-type 0) built from the flags.
pub fn notification_body(args: &SendArgs) -> Value {
    let mut click_action = Map::new();
    click_action.insert("actionType".into(), json!(0));
    if let Some(data) = &args.data {
        click_action.insert("data".into(), Value::Object(data.clone()));
    }
    let mut notification = Map::new();
    notification.insert("category".into(), json!(args.category));
    if let Some(title) = &args.title {
        notification.insert("title".into(), json!(title));
    }
    if let Some(body) = &args.body {
        notification.insert("body".into(), json!(body));
    }
    if let Some(notify_id) = args.notify_id {
        notification.insert("notifyId".into(), json!(notify_id));
    }
    notification.insert("clickAction".into(), Value::Object(click_action));

    let mut push_options = Map::new();
    if args.test {
        push_options.insert("testMessage".into(), json!(true));
    }
    if let Some(ttl) = args.ttl {
        push_options.insert("ttl".into(), json!(ttl));
    }
    let mut body = json!({
        "payload": {"notification": notification},
        "target": {"token": args.tokens},
    });
    if !push_options.is_empty() {
        body["pushOptions"] = Value::Object(push_options);
    }
    body
}

fn read_body(path: &PathBuf) -> anyhow::Result<Value> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the body from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn parse_json_object(s: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("must be a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        send: SendArgs,
    }

    fn parse(args: &[&str]) -> SendArgs {
        let mut argv = vec!["herald", "--key-file", "k.json"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("valid arguments").send
    }

    #[test]
    fn flags_build_a_push_kit_notification_body() {
        let args = parse(&[
            "--token",
            "t1",
            "--token",
            "t2",
            "--title",
            "Hi",
            "--body",
            "There",
            "--data",
            r#"{"k":"v"}"#,
            "--notify-id",
            "7",
            "--ttl",
            "60",
            "--test",
        ]);
        assert_eq!(
            notification_body(&args),
            json!({
                "payload": {"notification": {
                    "category": "MARKETING", "title": "Hi", "body": "There", "notifyId": 7,
                    "clickAction": {"actionType": 0, "data": {"k": "v"}}
                }},
                "target": {"token": ["t1", "t2"]},
                "pushOptions": {"testMessage": true, "ttl": 60}
            })
        );
    }

    #[test]
    fn a_token_that_begins_with_a_dash_is_a_value_not_a_flag() {
        // Tokens are base64url: about one in 64 begins with '-'.
        let args = parse(&["--token", "-2cMUZ2b3", "--token", "t2", "--title", "x"]);
        assert_eq!(args.tokens, ["-2cMUZ2b3", "t2"]);
        assert_eq!(args.title.as_deref(), Some("x"));
    }

    #[test]
    fn push_options_are_omitted_when_empty() {
        let body = notification_body(&parse(&["--token", "t"]));
        assert!(body.get("pushOptions").is_none());
    }

    #[test]
    fn a_json_body_replaces_the_flags() {
        let mut argv = vec!["herald", "--key-file", "k.json", "--json", "b.json"];
        let cli = Cli::try_parse_from(&argv).expect("--json alone is a whole send");
        assert_eq!(
            cli.send.json.as_deref(),
            Some(std::path::Path::new("b.json"))
        );
        assert!(cli.send.tokens.is_empty());
        argv.extend(["--title", "x"]);
        assert!(Cli::try_parse_from(&argv).is_err());
        assert!(Cli::try_parse_from(["herald", "--key-file", "k.json"]).is_err());
        assert!(
            Cli::try_parse_from(["herald", "--key-file", "k", "--token", "t", "--data", "[1]"])
                .is_err()
        );
    }
}
