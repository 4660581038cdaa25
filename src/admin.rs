//! `chatmesh admin`: the admin API of a running gateway from the command line (list
//! accounts, disable or enable one, delete a room, export a user's data, read the audit
//! log), on the SDK's [`Http`]. Only the server admins of `[admin] users` get anything but
//! 403; every action is in the audit log (docs/OPERATIONS.md "Server admins").

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use chatmesh_client::{AuditEntry, Error, ErrorCode, Http};

/// `chatmesh admin [OPTIONS] COMMAND`.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// The gateway's base URL (what `chatmesh up` prints as "web client").
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "CHATMESH_URL",
        global = true
    )]
    pub url: String,
    /// A server admin's token (or CHATMESH_TOKEN).
    #[arg(long, env = "CHATMESH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Log in as this user instead; the password comes from CHATMESH_PASSWORD.
    #[arg(long = "user", value_name = "ADMIN", global = true)]
    pub login: Option<String>,
    /// Print the API's JSON answers instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Register a server admin's account: a name of [admin] users that has no account yet,
    /// with the deployment's admin bootstrap token (CHATMESH_ADMIN_BOOTSTRAP_TOKEN) and the
    /// new password (CHATMESH_PASSWORD). Needs no login.
    Bootstrap {
        #[arg(value_name = "USER")]
        account: String,
    },
    /// List accounts, a page at a time (in the store's order, not alphabetical).
    Users {
        /// Start after this account (the last one of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Accounts per page (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Disable an account: login refused, every token revoked, its sessions closed.
    Disable {
        #[arg(value_name = "USER")]
        account: String,
    },
    /// Enable a disabled account again (its user logs in again).
    Enable {
        #[arg(value_name = "USER")]
        account: String,
    },
    /// Delete a room with its members, messages, search documents and cursors.
    DeleteRoom {
        room: String,
        /// Really delete it (nothing is deleted without it).
        #[arg(long)]
        yes: bool,
    },
    /// Export a user's data as JSON Lines.
    ExportUser {
        #[arg(value_name = "USER")]
        account: String,
        /// Output file (default: stdout).
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// The audit log, newest first.
    Audit {
        /// Entries to show (1–1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only entries older than this entry id (the `id` of the last one shown).
        #[arg(long)]
        before: Option<String>,
    },
}

/// Runs one admin command.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    if let AdminCommand::Bootstrap { account } = &args.command {
        return bootstrap(&args.url, account).await;
    }
    let http = connect(&args).await?;
    let json = args.json;
    match &args.command {
        AdminCommand::Users { after, limit } => {
            let page = http
                .admin_users(after.as_deref(), *limit)
                .await
                .map_err(|e| explain(e, "account"))?;
            if json {
                return print_json(&page);
            }
            for u in &page.users {
                let state = if u.disabled { "disabled" } else { "active" };
                let name = u.display_name.as_deref().unwrap_or("");
                say(&format!(
                    "{:<24} {:<8} {} {name}",
                    u.user,
                    state,
                    date(u.created_at)
                ));
            }
            if let (true, Some(last)) = (page.more, page.users.last()) {
                say(&format!("… more: --after {}", last.user));
            }
        }
        AdminCommand::Disable { account: user } | AdminCommand::Enable { account: user } => {
            let disable = matches!(args.command, AdminCommand::Disable { .. });
            let state = http
                .admin_set_disabled(user, disable)
                .await
                .map_err(|e| explain(e, "account"))?;
            if json {
                return print_json(&state);
            }
            let what = if state.disabled {
                "disabled: its tokens are revoked and its sessions closed"
            } else {
                "enabled: its user may log in again"
            };
            say(&format!("{user} {what}"));
        }
        AdminCommand::DeleteRoom { room, yes } => {
            if !yes {
                bail!(
                    "deleting {room} removes its members, messages, search documents and \
                     cursors for good; run again with --yes to do it"
                );
            }
            loop {
                let p = http
                    .admin_delete_room(room)
                    .await
                    .map_err(|e| explain(e, "room"))?;
                if json {
                    print_json(&p)?;
                } else {
                    say(&format!(
                        "{room}: {} ({} members, {} messages, {} cursors removed)",
                        if p.done { "deleted" } else { "deleting…" },
                        p.members,
                        p.messages,
                        p.cursors
                    ));
                }
                if p.done {
                    break;
                }
            }
        }
        AdminCommand::ExportUser { account: user, out } => {
            let summary = match out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    http.admin_export(user, &mut w).await
                }
                None => http.admin_export(user, &mut std::io::stdout().lock()).await,
            }
            .map_err(|e| explain(e, "account"))?;
            if let Some(error) = summary.error {
                bail!("the export stopped after {} lines: {error}", summary.lines);
            }
            if !summary.complete {
                bail!(
                    "the export ended early after {} lines (connection lost?)",
                    summary.lines
                );
            }
            if out.is_some() {
                eprintln!("{} lines exported", summary.lines);
            }
        }
        AdminCommand::Bootstrap { .. } => unreachable!("run before connecting"),
        AdminCommand::Audit { limit, before } => {
            let page = http
                .admin_audit(before.as_deref(), *limit)
                .await
                .map_err(|e| explain(e, "entry"))?;
            if json {
                return print_json(&page);
            }
            for e in &page.entries {
                say(&audit_line(e));
            }
            if let (true, Some(last)) = (page.more, page.entries.last()) {
                say(&format!("… more: --before {}", last.id));
            }
            if !page.unavailable.is_empty() {
                say(&format!(
                    "not read (did not answer): the log of {}",
                    page.unavailable.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// `chatmesh admin bootstrap USER`: registers a server admin's name with the bootstrap
/// token.
async fn bootstrap(url: &str, user: &str) -> anyhow::Result<()> {
    let token = std::env::var("CHATMESH_ADMIN_BOOTSTRAP_TOKEN")
        .context("set CHATMESH_ADMIN_BOOTSTRAP_TOKEN to the workers' [admin] bootstrap_token")?;
    let password = std::env::var("CHATMESH_PASSWORD")
        .context("set CHATMESH_PASSWORD to the new account's password")?;
    let http = Http::new(url).with_context(|| format!("the URL {url:?}"))?;
    match http.register_admin(user, &password, token.trim()).await {
        Ok(()) => {
            say(&format!(
                "{user} registered: a server admin (log in with --user {user})"
            ));
            Ok(())
        }
        Err(e) => match e.code() {
            Some(ErrorCode::Conflict) => bail!("{user} has an account already"),
            Some(ErrorCode::Forbidden | ErrorCode::BadRequest) => {
                let message = match &e {
                    Error::Api(api) => api.message.clone(),
                    _ => e.to_string(),
                };
                bail!("registration of {user} refused: {message}")
            }
            _ => Err(anyhow::Error::new(e).context(format!("registering at {url}"))),
        },
    }
}

/// The API with a token: `--token`/CHATMESH_TOKEN, or a login as `--user`. (Arguments
/// named like a global option would take its value: the accounts acted on are `account`.)
async fn connect(args: &AdminArgs) -> anyhow::Result<Http> {
    let http = Http::new(&args.url).with_context(|| format!("the URL {:?}", args.url))?;
    let token = match (&args.login, &args.token) {
        (Some(user), _) => {
            let password = std::env::var("CHATMESH_PASSWORD")
                .context("set CHATMESH_PASSWORD to log in as --user (or give a token)")?;
            http.login(user, &password)
                .await
                .map_err(|e| match e.code() {
                    Some(ErrorCode::Unauthorized) => {
                        anyhow::anyhow!("login as {user} refused: wrong user name or password")
                    }
                    _ => anyhow::Error::new(e).context(format!("logging in at {}", args.url)),
                })?
                .token
        }
        (None, Some(token)) => token.clone(),
        (None, None) => bail!(
            "give --token (or CHATMESH_TOKEN) of a server admin, or --user with CHATMESH_PASSWORD"
        ),
    };
    Ok(http.with_token(token))
}

/// An API error in words an operator can act on.
fn explain(e: Error, thing: &str) -> anyhow::Error {
    let message = match &e {
        Error::Api(api) => api.message.clone(),
        _ => return anyhow::Error::new(e).context("calling the gateway"),
    };
    match e.code() {
        Some(ErrorCode::Unauthorized) => anyhow::anyhow!(
            "not authenticated ({message}): the token is missing, expired or revoked, or the \
             account is disabled; log in again"
        ),
        Some(ErrorCode::Forbidden) => anyhow::anyhow!(
            "forbidden ({message}): only the server admins listed in [admin] users of the \
             gateways' and workers' config may do this"
        ),
        Some(ErrorCode::NotFound) => anyhow::anyhow!("no such {thing} ({message})"),
        Some(ErrorCode::BadRequest) => anyhow::anyhow!("bad request: {message}"),
        Some(code) => anyhow::anyhow!("{}: {message}", code.as_str()),
        None => anyhow::Error::new(e),
    }
}

fn audit_line(e: &AuditEntry) -> String {
    let mut line = format!(
        "{} {:<16} {:<12} {:<24} {:<10} {}",
        date(e.ts),
        e.actor,
        e.action,
        e.target,
        e.outcome,
        e.ip
    );
    if !e.detail.is_empty() {
        line.push_str(&format!("  ({})", e.detail));
    }
    line
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of ms since the Unix epoch.
fn date(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => ms.to_string(),
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    say(&serde_json::to_string(value)?);
    Ok(())
}

/// A line on stdout; a closed stdout (a pipe's reader gone) is not an error worth a panic.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}
