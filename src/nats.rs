//! How chatmesh services connect to NATS: with their role's credentials and inbox prefix
//! (the bus is closed, see [`chatmesh_protocol::bus`]), TLS when a CA is configured, short
//! pings (the 60 s default notices a dead link only after minutes), endless reconnects, and
//! the client's silent slow-consumer drops made loud in logs and metrics.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::{ConnectOptions, Event};
use chatmesh_protocol::bus::Role;
use chatmesh_protocol::MeshConfig;

/// Connects to `mesh.nats_urls` as a service of `role`, named `name`.
pub async fn connect(
    mesh: &MeshConfig,
    role: Role,
    name: &str,
) -> anyhow::Result<async_nats::Client> {
    let addrs = mesh
        .nats_urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let opts = options(mesh, role).await?;
    let client = opts
        .name(name)
        .ping_interval(Duration::from_secs(15))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(|event| async move {
            match event {
                Event::SlowConsumer(sid) => {
                    // Core NATS events may be gone: gateways ask again about what they keep.
                    natskit::lossy::note_slow_consumer();
                    metrics::counter!("chatmesh_nats_slow_consumer_total").increment(1);
                    tracing::warn!(sid, "NATS client dropped messages of a slow subscription");
                }
                Event::Disconnected => tracing::warn!("NATS disconnected"),
                Event::Connected => tracing::info!("NATS connected"),
                Event::ServerError(e) => tracing::error!(error = %e, "NATS server error"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        })
        .connect(addrs)
        .await
        .with_context(|| format!("connecting to NATS {:?} as {}", mesh.nats_urls, role.name()))?;
    Ok(client)
}

/// Credentials, TLS and inbox prefix for `role` from `mesh`.
async fn options(mesh: &MeshConfig, role: Role) -> anyhow::Result<ConnectOptions> {
    let mut opts = if let Some(path) = &mesh.nats_creds_file {
        ConnectOptions::with_credentials_file(path)
            .await
            .with_context(|| format!("reading mesh.nats_creds_file {}", path.display()))?
    } else if let Some(path) = &mesh.nats_nkey_file {
        let seed = std::fs::read_to_string(path)
            .with_context(|| format!("reading mesh.nats_nkey_file {}", path.display()))?;
        ConnectOptions::with_nkey(seed.trim().to_owned())
    } else if let (Some(user), Some(password)) = (&mesh.nats_user, &mesh.nats_password) {
        ConnectOptions::with_user_and_password(user.clone(), password.0.clone())
    } else {
        tracing::warn!(
            role = role.name(),
            "connecting to NATS without credentials: anyone who reaches the bus can read and \
             write every room (set mesh.nats_nkey_file, see docs/SECURITY.md)"
        );
        ConnectOptions::new()
    };
    if let Some(ca) = &mesh.nats_tls_ca {
        // Builds that also link aws-lc-rs (the load harness's HTTP client) leave rustls
        // without a process default; chatmesh uses ring everywhere. Already set is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        opts = opts.require_tls(true).add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&mesh.nats_tls_cert, &mesh.nats_tls_key) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(opts.custom_inbox_prefix(role.inbox_prefix()))
}
