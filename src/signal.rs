//! The shutdown signal of a service: Ctrl-C (SIGINT) or SIGTERM. The first one starts a
//! drain; a second one while it runs ends the process at once (exit status 130), the way an
//! operator expects a second Ctrl-C to work when a drain waits on something slow. Nothing
//! acked is lost by that: an ack means stored in JetStream, and the store writers resume
//! from their checkpoints.

use std::future::Future;

/// The exit status of a stop forced by a second signal (128 + SIGINT, as shells report it).
pub const FORCED_EXIT: i32 = 130;

/// Listens for Ctrl-C or SIGTERM from now on; the future resolves on the first one, and a
/// second one ends the process. The handlers are installed by this call, not when the
/// future is first polled: a service calls it before it announces that it is up, so a
/// SIGTERM sent right after the announcement drains it instead of killing it.
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
                tokio::spawn(async move {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    force_exit();
                });
            }
            // No SIGTERM handler: Ctrl-C only.
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                tokio::spawn(async {
                    let _ = tokio::signal::ctrl_c().await;
                    force_exit();
                });
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tokio::spawn(async {
                let _ = tokio::signal::ctrl_c().await;
                force_exit();
            });
        }
        tracing::info!("shutdown signal received; draining (a second signal stops at once)");
    }
}

fn force_exit() {
    tracing::warn!("second shutdown signal: stopping without finishing the drain");
    eprintln!("second signal: stopping without finishing the drain");
    std::process::exit(FORCED_EXIT);
}
