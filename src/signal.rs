//! The shutdown signal of a service: Ctrl-C (SIGINT) or SIGTERM.

use std::future::Future;

/// Listens for Ctrl-C or SIGTERM from now on; the future resolves on the first one. The
/// handlers are installed by this call, not when the future is first polled: a service
/// calls it before it announces that it is up, so a SIGTERM sent right after the
/// announcement drains it instead of killing it.
pub fn shutdown() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    async move {
        #[cfg(unix)]
        match signals {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            // No SIGTERM handler: Ctrl-C only.
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
    }
}
