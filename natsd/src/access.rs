//! Who may connect to a launched server and how: an `authorization { … }` block placed in
//! its config, TLS on its client port, and the credentials this crate's own connections
//! (the readiness probe, [`crate::NatsServer::connect`]) present. With none set the server is
//! open, as nats-server is by default — only for tests that need a bare bus.

use std::path::PathBuf;
use std::time::Duration;

/// TLS on the client port: the server's certificate chain and key, and the CA clients
/// trust it by (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Access settings of a launched server.
#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    /// Verbatim config text, e.g. an `authorization { users = [...] }` block.
    pub authorization: Option<String>,
    /// Seed of the nkey this crate's own connections use.
    pub client_nkey: Option<String>,
    pub tls: Option<Tls>,
}

impl Access {
    /// The server config lines for these settings.
    pub fn config(&self) -> String {
        let mut out = String::new();
        if let Some(tls) = &self.tls {
            out.push_str(&format!(
                "tls {{\n  cert_file: {}\n  key_file: {}\n  timeout: 2\n}}\n",
                quote_path(&tls.cert),
                quote_path(&tls.key),
            ));
        }
        if let Some(text) = &self.authorization {
            out.push_str(text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// Connect options carrying this crate's credentials and TLS trust.
    pub fn client_options(&self, timeout: Duration) -> async_nats::ConnectOptions {
        let mut opts = async_nats::ConnectOptions::new().connection_timeout(timeout);
        if let Some(seed) = &self.client_nkey {
            opts = opts.nkey(seed.clone());
        }
        if let Some(tls) = &self.tls {
            // A process that links both rustls backends has no default provider; ring is
            // the one chatmesh uses. Already installed is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
            opts = opts.require_tls(true).add_root_certificates(tls.ca.clone());
        }
        opts
    }
}

fn quote_path(path: &std::path::Path) -> String {
    serde_json::Value::from(path.display().to_string()).to_string()
}
