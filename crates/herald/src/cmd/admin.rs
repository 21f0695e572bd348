//! `herald admin`: the operator's commands over the admin API. Every command prints JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use herald_client::admin::{AdminClient, AdminResponse};
use serde_json::{Value, json};

/// Arguments of `herald admin`.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Server base URL (default: `push_api_url` from the bootstrap file, else
    /// http://127.0.0.1:8080).
    #[arg(long, env = "HERALD_SERVER", global = true)]
    pub server: Option<String>,
    /// Admin bearer token (default: `admin_token` from the bootstrap file).
    #[arg(
        long,
        env = "HERALD_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// A `bootstrap.json` to take the server URL and token from
    /// (default: ./herald-data/bootstrap.json when it exists).
    #[arg(long, value_name = "FILE", global = true)]
    pub bootstrap: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for `https://` besides the system's
    /// (e.g. the `ca.pem` of `herald cert create`).
    #[arg(long, env = "HERALD_CA_FILE", value_name = "FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Scenario rights: notification categories, VOIP_CALL, LIVE_VIEW_<EVENT>, IM_BACKGROUND.
    Rights {
        #[command(subcommand)]
        command: RightsCommand,
    },
    /// Apps.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Projects.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Service-account keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Quotas: an app's limits and today's usage.
    Quota {
        #[command(subcommand)]
        command: QuotaCommand,
    },
    /// Delivery-receipt configurations: where each message's fate is reported.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// Users (the instance admin creates them).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// A project's members and their roles (owner, operations, product,
    /// backend_developer, app_developer).
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Your own password.
    Password {
        #[command(subcommand)]
        command: PasswordCommand,
    },
    /// Sign in: prints a bearer token (valid `[auth] token_ttl_secs`) to pass as
    /// --token or HERALD_ADMIN_TOKEN. Without --password it is read from standard input.
    Login {
        #[arg(long)]
        username: String,
        #[arg(long, env = "HERALD_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Sign out: the token (--token) stops working at once.
    Logout,
    /// Who you are: your projects, your role and the actions it allows in each.
    Me,
    /// A project's audit log, newest first (owners and the instance admin).
    Audit {
        /// The project (default: the bootstrap file's).
        #[arg(long)]
        project_id: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user; with no --password one is generated and printed (once).
    Create {
        #[arg(long)]
        username: String,
        /// 8 to 1024 characters.
        #[arg(long, env = "HERALD_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// List users.
    List,
}

#[derive(Debug, clap::Subcommand)]
pub enum MemberCommand {
    /// Make a user a member of a project with a role (or change their role).
    Add {
        /// The project (default: the bootstrap file's).
        #[arg(long)]
        project_id: Option<String>,
        #[arg(long)]
        username: String,
        /// owner | operations | product | backend_developer | app_developer
        #[arg(long)]
        role: String,
    },
    /// Remove a member from a project.
    Remove {
        /// The project (default: the bootstrap file's).
        #[arg(long)]
        project_id: Option<String>,
        #[arg(long)]
        username: String,
    },
    /// A project's members and their roles.
    List {
        /// The project (default: the bootstrap file's).
        #[arg(long)]
        project_id: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum PasswordCommand {
    /// Change the password of the user the token belongs to; their other sessions end.
    /// Without the flags, the current and the new password are read from the first two
    /// lines of standard input.
    Change {
        #[arg(long, env = "HERALD_CURRENT_PASSWORD", hide_env_values = true)]
        current_password: Option<String>,
        #[arg(long, env = "HERALD_NEW_PASSWORD", hide_env_values = true)]
        new_password: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ReceiptCommand {
    /// Create a receipt configuration; prints its receiptId and secret.
    Create {
        /// The callback URL.
        #[arg(long)]
        url: String,
        /// Callback user name (signed into X-HUAWEI-CALLBACK-ID).
        #[arg(long)]
        username: Option<String>,
        /// Signing secret (default: generated, Base64 of 32 random bytes).
        #[arg(long)]
        secret: Option<String>,
        /// Make it app-level (wins over the project's configurations).
        #[arg(long)]
        client_id: Option<String>,
        /// The project (default: the app's with --client-id, else the bootstrap file's).
        #[arg(long)]
        project_id: Option<String>,
    },
    /// List a project's receipt configurations.
    List {
        /// The project (default: the bootstrap file's).
        #[arg(long)]
        project_id: Option<String>,
    },
    /// Delete a receipt configuration (its pending receipts are dropped).
    Delete {
        #[arg(long)]
        receipt_id: String,
    },
    /// Send the fixed test receipt and report whether the endpoint answered success.
    Test {
        #[arg(long)]
        receipt_id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct RightArgs {
    #[arg(long)]
    pub client_id: String,
    /// The right: a category (IM, WORK, …), VOIP_CALL, LIVE_VIEW_<EVENT> or IM_BACKGROUND.
    #[arg(long, alias = "right")]
    pub category: String,
    /// Why (for `grant`, `refuse`, `revoke`, `confirm`); for `request`, the scenario
    /// when --scenario is not given.
    #[arg(long)]
    pub reason: Option<String>,
    /// For `request`: the push scenario the right serves (required, or --reason).
    #[arg(long)]
    pub scenario: Option<String>,
    /// For `request`: a sample message of the scenario, for product to confirm.
    #[arg(long)]
    pub sample_message: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum RightsCommand {
    /// Apply for a right (operations, owner), with the scenario it serves and a sample
    /// message.
    Request(RightArgs),
    /// Confirm that a requested right's scenario matches its category (product, owner).
    Confirm(RightArgs),
    /// Grant a right (the instance admin).
    Grant(RightArgs),
    /// Refuse a requested right.
    Refuse(RightArgs),
    /// Revoke a granted right.
    Revoke(RightArgs),
    /// An app's rights, their states and history.
    List {
        #[arg(long)]
        client_id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AppCommand {
    /// Create an app in a project.
    Create {
        #[arg(long)]
        project_id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        package_name: String,
        /// news | other
        #[arg(long)]
        app_category: Option<String>,
    },
    /// Change an app's category or limits ("default" returns a limit to the default).
    Update {
        #[arg(long)]
        client_id: String,
        /// news (5 MARKETING messages a day) | other (2)
        #[arg(long)]
        app_category: Option<String>,
        #[arg(long, value_name = "N|default")]
        marketing_per_day: Option<String>,
        #[arg(long, value_name = "N|default")]
        device_daily_total: Option<String>,
        #[arg(long, value_name = "N|default")]
        send_rate_per_sec: Option<String>,
    },
    /// Show an app.
    Show {
        #[arg(long)]
        client_id: String,
    },
    /// List apps.
    List {
        #[arg(long)]
        project_id: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ProjectCommand {
    /// Create a project.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List projects.
    List,
    /// Switch a project's push service on or off (off: sends and revokes answer 80300002).
    Update {
        /// The project (default: the bootstrap file's).
        #[arg(long)]
        project_id: Option<String>,
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
        push_enabled: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Create a service-account key; writes the key file (mode 0600) and prints its path.
    Create {
        #[arg(long)]
        project_id: String,
        /// Where to write the key file (default: ./service-account-<key_id>.json).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List a project's keys (public parts; revoked ones say so).
    List {
        #[arg(long)]
        project_id: String,
    },
    /// Revoke a key: every JWT it signed is refused (80200001) on every node from now on.
    Revoke {
        #[arg(long)]
        key_id: String,
        /// The key's project (default: found among the projects).
        #[arg(long)]
        project_id: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum QuotaCommand {
    /// Show an app's limits and today's usage (of one device too, with --device-id).
    Show {
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        device_id: Option<String>,
    },
}

/// The server's admin API, and the bootstrap file when there is one.
struct Connection {
    client: AdminClient,
    bootstrap: Option<Value>,
}

/// Resolve server URL and token: flags/env first, then the bootstrap file.
fn connect(args: &AdminArgs) -> anyhow::Result<Connection> {
    let bootstrap_path = args.bootstrap.clone().or_else(|| {
        let default = PathBuf::from("herald-data/bootstrap.json");
        default.exists().then_some(default)
    });
    let bootstrap: Option<Value> = match &bootstrap_path {
        Some(p) => Some(
            serde_json::from_str(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("{} is not JSON", p.display()))?,
        ),
        None => None,
    };
    let from_bootstrap = |field: &str| {
        bootstrap
            .as_ref()
            .and_then(|b| b[field].as_str())
            .map(str::to_owned)
    };
    let server = args
        .server
        .clone()
        .or_else(|| from_bootstrap("push_api_url"))
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let token = match args.token.clone().or_else(|| from_bootstrap("admin_token")) {
        Some(token) => token,
        // Signing in needs no token.
        None if matches!(args.command, AdminCommand::Login { .. }) => String::new(),
        None => {
            bail!("no admin token: pass --token, set HERALD_ADMIN_TOKEN or --bootstrap FILE")
        }
    };
    let ca = super::load_ca(args.ca_file.as_deref())?;
    Ok(Connection {
        client: AdminClient::trusting(server, token, ca.as_ref())?,
        bootstrap,
    })
}

impl Connection {
    /// `--project-id`, else the app's project (with `--client-id`), else the bootstrap's.
    async fn project_id(
        &self,
        project_id: &Option<String>,
        client_id: &Option<String>,
    ) -> anyhow::Result<String> {
        if let Some(p) = project_id {
            return Ok(p.clone());
        }
        if let Some(c) = client_id {
            let r = self.client.get(&format!("/api/v1/apps/{c}")).await?;
            if !r.is_success() {
                bail!("app {c}: {}", r.body);
            }
            if let Some(p) = r.body["project_id"].as_str() {
                return Ok(p.to_owned());
            }
        }
        self.bootstrap
            .as_ref()
            .and_then(|b| b["project_id"].as_str())
            .map(str::to_owned)
            .context("no project: pass --project-id (or --bootstrap FILE)")
    }
}

fn limit(value: &Option<String>, name: &str) -> anyhow::Result<Option<Value>> {
    match value.as_deref() {
        None => Ok(None),
        Some("default") => Ok(Some(Value::Null)),
        Some(n) => Ok(Some(json!(n.parse::<u32>().with_context(|| {
            format!("--{name} takes a number or \"default\"")
        })?))),
    }
}

fn write_key_file(path: &Path, key: &Value) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(serde_json::to_string_pretty(key)?.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(())
}

/// `DELETE /api/v1/projects/{project}/keys/{key}`, the project looked up among all
/// projects' keys when not given; prints `{"key_id":…,"project_id":…,"revoked":true}`.
async fn revoke_key(
    client: &AdminClient,
    key_id: &str,
    project_id: Option<&str>,
) -> anyhow::Result<AdminResponse> {
    let project_id = match project_id {
        Some(p) => p.to_owned(),
        None => {
            let projects = client.get("/api/v1/projects").await?;
            if !projects.is_success() {
                return Ok(projects);
            }
            let mut found = None;
            for p in projects.body.as_array().into_iter().flatten() {
                let Some(p) = p["project_id"].as_str() else {
                    continue;
                };
                let keys = client.get(&format!("/api/v1/projects/{p}/keys")).await?;
                let has = keys
                    .body
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["key_id"] == key_id);
                if has {
                    found = Some(p.to_owned());
                    break;
                }
            }
            match found {
                Some(p) => p,
                None => {
                    return Ok(AdminResponse {
                        status: 404,
                        body: json!({"error": "no such key"}),
                    });
                }
            }
        }
    };
    let r = client
        .delete(&format!("/api/v1/projects/{project_id}/keys/{key_id}"))
        .await?;
    if !r.is_success() {
        return Ok(r);
    }
    Ok(AdminResponse {
        status: r.status,
        body: json!({"key_id": key_id, "project_id": project_id, "revoked": true}),
    })
}

/// A password for a new user: 24 random URL-safe characters (18 random bytes).
fn generate_password() -> String {
    herald_server::ids::secret(18)
}

/// The current and the new password, from the first two lines of standard input.
fn passwords_from_stdin() -> anyhow::Result<(String, String)> {
    let mut lines = std::io::stdin().lines();
    let mut next = |what: &str| -> anyhow::Result<String> {
        lines
            .next()
            .transpose()?
            .map(|l| l.trim_end_matches('\r').to_owned())
            .with_context(|| {
                format!(
                    "no {what} on standard input (or pass --current-password and --new-password)"
                )
            })
    };
    Ok((next("current password")?, next("new password")?))
}

/// Runs one admin command and prints its JSON answer; non-zero exit on an error answer.
pub async fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let connection = connect(&args)?;
    let client = &connection.client;
    let response: AdminResponse = match &args.command {
        AdminCommand::Rights { command } => match command {
            RightsCommand::List { client_id } => {
                client
                    .get(&format!("/api/v1/apps/{client_id}/rights"))
                    .await?
            }
            RightsCommand::Request(a)
            | RightsCommand::Confirm(a)
            | RightsCommand::Grant(a)
            | RightsCommand::Refuse(a)
            | RightsCommand::Revoke(a) => {
                let action = match command {
                    RightsCommand::Request(_) => "request",
                    RightsCommand::Confirm(_) => "confirm",
                    RightsCommand::Grant(_) => "grant",
                    RightsCommand::Refuse(_) => "refuse",
                    _ => "revoke",
                };
                client
                    .post(
                        &format!(
                            "/api/v1/apps/{}/rights/{}/{action}",
                            a.client_id, a.category
                        ),
                        &json!({ "reason": a.reason, "scenario": a.scenario,
                                 "sample_message": a.sample_message }),
                    )
                    .await?
            }
        },
        AdminCommand::App { command } => match command {
            AppCommand::Create {
                project_id,
                name,
                package_name,
                app_category,
            } => {
                client
                    .post(
                        "/api/v1/apps",
                        &json!({"project_id": project_id, "name": name,
                                "package_name": package_name, "app_category": app_category}),
                    )
                    .await?
            }
            AppCommand::Update {
                client_id,
                app_category,
                marketing_per_day,
                device_daily_total,
                send_rate_per_sec,
            } => {
                let mut patch = serde_json::Map::new();
                if let Some(c) = app_category {
                    patch.insert("app_category".into(), json!(c));
                }
                for (name, value) in [
                    ("marketing_per_day", marketing_per_day),
                    ("device_daily_total", device_daily_total),
                    ("send_rate_per_sec", send_rate_per_sec),
                ] {
                    if let Some(v) = limit(value, &name.replace('_', "-"))? {
                        patch.insert(name.into(), v);
                    }
                }
                client
                    .patch(&format!("/api/v1/apps/{client_id}"), &Value::Object(patch))
                    .await?
            }
            AppCommand::Show { client_id } => {
                client.get(&format!("/api/v1/apps/{client_id}")).await?
            }
            AppCommand::List { project_id } => match project_id {
                Some(p) => client.get(&format!("/api/v1/apps?project_id={p}")).await?,
                None => client.get("/api/v1/apps").await?,
            },
        },
        AdminCommand::Project { command } => match command {
            ProjectCommand::Create { name } => {
                client
                    .post("/api/v1/projects", &json!({ "name": name }))
                    .await?
            }
            ProjectCommand::List => client.get("/api/v1/projects").await?,
            ProjectCommand::Update {
                project_id,
                push_enabled,
            } => {
                let project_id = connection.project_id(project_id, &None).await?;
                client
                    .patch(
                        &format!("/api/v1/projects/{project_id}"),
                        &json!({ "push_enabled": push_enabled }),
                    )
                    .await?
            }
        },
        AdminCommand::User { command } => match command {
            UserCommand::List => client.get("/api/v1/users").await?,
            UserCommand::Create { username, password } => {
                let generated = password.is_none();
                let password = password.clone().unwrap_or_else(generate_password);
                let r = client
                    .post(
                        "/api/v1/users",
                        &json!({"username": username, "password": password}),
                    )
                    .await?;
                if r.is_success() && generated {
                    let mut body = r.body;
                    body["password"] = json!(password);
                    AdminResponse {
                        status: r.status,
                        body,
                    }
                } else {
                    r
                }
            }
        },
        AdminCommand::Member { command } => match command {
            MemberCommand::Add {
                project_id,
                username,
                role,
            } => {
                let project_id = connection.project_id(project_id, &None).await?;
                client
                    .post(
                        &format!("/api/v1/projects/{project_id}/members"),
                        &json!({"username": username, "role": role}),
                    )
                    .await?
            }
            MemberCommand::Remove {
                project_id,
                username,
            } => {
                let project_id = connection.project_id(project_id, &None).await?;
                let r = client
                    .delete(&format!("/api/v1/projects/{project_id}/members/{username}"))
                    .await?;
                if r.is_success() {
                    AdminResponse {
                        status: r.status,
                        body: json!({"project_id": project_id, "username": username, "removed": true}),
                    }
                } else {
                    r
                }
            }
            MemberCommand::List { project_id } => {
                let project_id = connection.project_id(project_id, &None).await?;
                client
                    .get(&format!("/api/v1/projects/{project_id}/members"))
                    .await?
            }
        },
        AdminCommand::Password { command } => match command {
            PasswordCommand::Change {
                current_password,
                new_password,
            } => {
                let (current, new) = match (current_password, new_password) {
                    (Some(c), Some(n)) => (c.clone(), n.clone()),
                    _ => passwords_from_stdin()?,
                };
                let r = client
                    .post(
                        "/api/v1/users/me/password",
                        &json!({"current_password": current, "new_password": new}),
                    )
                    .await?;
                if r.is_success() {
                    AdminResponse {
                        status: r.status,
                        body: json!({"changed": true}),
                    }
                } else {
                    r
                }
            }
        },
        AdminCommand::Login { username, password } => {
            let password = match password {
                Some(p) => p.clone(),
                None => std::io::stdin()
                    .lines()
                    .next()
                    .transpose()?
                    .context("no password on standard input (or pass --password)")?,
            };
            client
                .post(
                    "/api/v1/sessions",
                    &json!({"username": username, "password": password}),
                )
                .await?
        }
        AdminCommand::Logout => {
            let r = client.delete("/api/v1/sessions/current").await?;
            if r.is_success() {
                AdminResponse {
                    status: r.status,
                    body: json!({"signed_out": true}),
                }
            } else {
                r
            }
        }
        AdminCommand::Me => client.get("/api/v1/me").await?,
        AdminCommand::Audit { project_id, limit } => {
            let project_id = connection.project_id(project_id, &None).await?;
            client
                .get(&format!(
                    "/api/v1/projects/{project_id}/audit?limit={limit}"
                ))
                .await?
        }
        AdminCommand::Key { command } => match command {
            KeyCommand::Revoke { key_id, project_id } => {
                revoke_key(client, key_id, project_id.as_deref()).await?
            }
            KeyCommand::List { project_id } => {
                client
                    .get(&format!("/api/v1/projects/{project_id}/keys"))
                    .await?
            }
            KeyCommand::Create { project_id, out } => {
                let r = client
                    .post(&format!("/api/v1/projects/{project_id}/keys"), &json!({}))
                    .await?;
                if !r.is_success() {
                    r
                } else {
                    let key_id = r.body["key_id"].as_str().unwrap_or("key").to_owned();
                    let path = out
                        .clone()
                        .unwrap_or_else(|| PathBuf::from(format!("service-account-{key_id}.json")));
                    write_key_file(&path, &r.body)?;
                    let path = std::path::absolute(&path).unwrap_or(path);
                    AdminResponse {
                        status: r.status,
                        body: json!({"path": path, "key_id": key_id, "project_id": project_id}),
                    }
                }
            }
        },
        AdminCommand::Quota { command } => match command {
            QuotaCommand::Show {
                client_id,
                device_id,
            } => {
                let path = match device_id {
                    Some(d) => format!("/api/v1/apps/{client_id}/quotas?device_id={d}"),
                    None => format!("/api/v1/apps/{client_id}/quotas"),
                };
                client.get(&path).await?
            }
        },
        AdminCommand::Receipt { command } => match command {
            ReceiptCommand::Create {
                url,
                username,
                secret,
                client_id,
                project_id,
            } => {
                let project_id = connection.project_id(project_id, client_id).await?;
                client
                    .post(
                        &format!("/api/v1/projects/{project_id}/receipts"),
                        &json!({"url": url, "username": username, "secret": secret,
                                "client_id": client_id}),
                    )
                    .await?
            }
            ReceiptCommand::List { project_id } => {
                let project_id = connection.project_id(project_id, &None).await?;
                client
                    .get(&format!("/api/v1/projects/{project_id}/receipts"))
                    .await?
            }
            ReceiptCommand::Delete { receipt_id } => {
                client
                    .delete(&format!("/api/v1/receipts/{receipt_id}"))
                    .await?
            }
            ReceiptCommand::Test { receipt_id } => {
                let r = client
                    .post(&format!("/api/v1/receipts/{receipt_id}/test"), &json!({}))
                    .await?;
                // A test the endpoint failed is a failed command.
                if r.is_success() && r.body["success"] != true {
                    AdminResponse {
                        status: 502,
                        body: r.body,
                    }
                } else {
                    r
                }
            }
        },
    };
    println!("{}", serde_json::to_string_pretty(&response.body)?);
    Ok(if response.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
