//! The nats-server child process: signalling it and making sure it is reaped. Dropping a
//! [`Proc`] SIGKILLs and waits, so no test or panicking caller leaves a server behind; its
//! watchdog (`watchdog.rs`) covers a caller that is killed.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::watchdog::Watchdog;

/// A running (or exited but not yet reaped) nats-server.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    /// Ends the server if this process dies without stopping it; dropped with the `Proc`.
    _watchdog: Option<Watchdog>,
}

impl Proc {
    pub(crate) fn new(child: Child, watchdog: Option<Watchdog>) -> Self {
        Proc {
            child,
            _watchdog: watchdog,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM (graceful: JetStream flushes), wait up to `grace`, then SIGKILL.
    pub(crate) async fn stop(mut self, grace: Duration) {
        // Reaped already: its pid may name another process by now.
        if self.exited().is_some() {
            return;
        }
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if sent {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if self.exited().is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tracing::warn!(pid, ?grace, "nats-server ignored SIGTERM, sending SIGKILL");
        }
        self.kill();
    }

    /// SIGKILL and reap.
    pub(crate) fn kill(&mut self) {
        if let Err(error) = self.child.kill() {
            tracing::warn!(pid = self.pid(), %error, "SIGKILL nats-server failed");
        }
        if let Err(error) = self.child.wait() {
            tracing::warn!(pid = self.pid(), %error, "reaping nats-server failed");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
    }
}
