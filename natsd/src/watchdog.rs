//! A nats-server must not outlive the process that started it. A graceful stop and a panic
//! stop it (`Proc`'s `Drop`), but a SIGKILL or a crash of the parent runs no code at all, and
//! the server would live on, orphaned, holding its ports and store. So every server gets a
//! watchdog: a small `sh` loop that checks the parent once a second and, once it is gone (or
//! a zombie), sends the server SIGTERM. Before signalling, it checks that the pid still names
//! this server (its command line holds the config file's path), so a reused pid is never
//! hit. The parent stops the watchdog whenever it stops the server itself. No `unsafe`
//! (no `pre_exec`/`PR_SET_PDEATHSIG`): it only needs `sh`, `kill`, `sleep` and `/proc`.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The loop: `$1` parent pid, `$2` server pid, `$3` a string of the server's command line.
const SCRIPT: &str = r#"p=$1; s=$2; m=$3
alive() {
  kill -0 "$p" 2>/dev/null || return 1
  read -r _ _ state _ < "/proc/$p/stat" 2>/dev/null || return 1
  [ "$state" != Z ]
}
while alive; do sleep 1; done
if tr '\0' ' ' < "/proc/$s/cmdline" 2>/dev/null | grep -qF -- "$m"; then kill -TERM "$s"; fi
"#;

/// The watchdog of one server; dropping it stops it.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Watches this process on behalf of server `pid`, started with `config`. `None` (and a
    /// warning) when `sh` cannot be started: the server then only stops with its parent's
    /// graceful stop.
    pub(crate) fn start(pid: u32, config: &Path) -> Option<Self> {
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("natsd-watchdog")
            .arg(std::process::id().to_string())
            .arg(pid.to_string())
            .arg(config)
            // Out of the terminal's foreground group, like the server it watches: a Ctrl-C
            // must not end the watchdog while its parent is still draining.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => Some(Self { child }),
            Err(error) => {
                tracing::warn!(%error, "no watchdog for nats-server: it will outlive a crash of this process");
                None
            }
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
