//! One launch of nats-server: check the binary, write its config into the store dir, spawn
//! it with output going to the log file, and poll (with a deadline) for its ports file and a
//! successful client connect. A failed launch kills its child and reports the log's tail.
//! The server runs in a process group of its own, out of reach of a terminal's Ctrl-C.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::access::Access;
use crate::ports::{self, Ports};
use crate::process::Proc;
use crate::watchdog::Watchdog;
use crate::{Error, Result};

const POLL: Duration = Duration::from_millis(20);

/// What stays the same across restarts.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub binary: Option<PathBuf>,
    pub server_name: String,
    pub max_payload: u32,
    pub ready_timeout: Duration,
    pub access: Access,
    /// `GOMAXPROCS` of the child (threads running Go code at once); `None`: Go's default,
    /// one per core, or the value inherited from this process's environment.
    pub threads: Option<usize>,
}

impl Default for Launch {
    fn default() -> Self {
        Launch {
            binary: None,
            server_name: "chatmesh".to_owned(),
            max_payload: 1024 * 1024,
            ready_timeout: Duration::from_secs(10),
            access: Access::default(),
            threads: None,
        }
    }
}

pub(crate) fn log_path(store_dir: &Path) -> PathBuf {
    store_dir.join("nats-server.log")
}

impl Launch {
    /// Starts a server on `store_dir`; `None` ports are chosen by the server.
    pub async fn run(
        &self,
        store_dir: &Path,
        port: Option<u16>,
        monitor: Option<u16>,
    ) -> Result<(Proc, Ports)> {
        let binary = match &self.binary {
            Some(path) => path.clone(),
            None => crate::locate()?.path,
        };
        crate::check_binary(&binary)?;
        let ports_dir = store_dir.join("ports");
        fs::create_dir_all(&ports_dir).map_err(|e| Error::io("creating", &ports_dir, e))?;
        ports::clear(&ports_dir);
        let config = store_dir.join("nats-server.conf");
        let text = self.config(store_dir, &ports_dir, port, monitor);
        fs::write(&config, text).map_err(|e| Error::io("writing", &config, e))?;

        let log = log_path(store_dir);
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| Error::io("opening", &log, e))?;
        let err = out.try_clone().map_err(|e| Error::io("opening", &log, e))?;
        let mut command = Command::new(&binary);
        if let Some(threads) = self.threads {
            command.env("GOMAXPROCS", threads.to_string());
        }
        // A process group of its own: a terminal's Ctrl-C (SIGINT to the foreground group)
        // reaches only the parent, which drains its clients before it stops the server.
        // Sharing the group, the server quit first and the parent's drain waited on a dead bus.
        let child = command
            .arg("-c")
            .arg(&config)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Exec {
                path: binary.clone(),
                source,
            })?;
        let watchdog = Watchdog::start(child.id(), &config);
        let mut proc = Proc::new(child, watchdog);
        tracing::debug!(pid = proc.pid(), store = %store_dir.display(), "nats-server spawned");
        let ports = self.wait_ready(&mut proc, &ports_dir, &log).await?;
        Ok((proc, ports))
    }

    fn config(
        &self,
        store: &Path,
        ports_dir: &Path,
        port: Option<u16>,
        mon: Option<u16>,
    ) -> String {
        let port = port.map_or("-1".to_owned(), |p| p.to_string());
        let mon = mon.map_or("-1".to_owned(), |p| p.to_string());
        format!(
            "# written by natsd on every start; edits are lost\n\
             server_name: {name}\nhost: \"127.0.0.1\"\nport: {port}\n\
             http: \"127.0.0.1:{mon}\"\nmax_payload: {payload}\nports_file_dir: {ports}\n\
             jetstream {{\n  store_dir: {store}\n}}\n{access}",
            name = quote(&self.server_name),
            payload = self.max_payload,
            ports = quote(&ports_dir.display().to_string()),
            store = quote(&store.display().to_string()),
            access = self.access.config(),
        )
    }

    /// Polls until the ports file names the client port and a client connects there.
    async fn wait_ready(&self, proc: &mut Proc, ports_dir: &Path, log: &Path) -> Result<Ports> {
        let started = Instant::now();
        let deadline = started + self.ready_timeout;
        let mut reason = "no ports file yet".to_owned();
        while Instant::now() < deadline {
            if let Some(status) = proc.exited() {
                reason = format!("exited with {status}");
                break;
            }
            if let Some(ports) = ports::read(ports_dir, proc.pid()) {
                match connect(ports.client, &self.access).await {
                    Ok(()) => return Ok(ports),
                    Err(why) => reason = why,
                }
            }
            tokio::time::sleep(POLL).await;
        }
        proc.kill();
        Err(Error::NotReady {
            waited: started.elapsed(),
            reason,
            log: log.to_path_buf(),
            log_tail: ports::log_tail(log, 20),
        })
    }
}

async fn connect(port: u16, access: &Access) -> Result<(), String> {
    let addr = format!("127.0.0.1:{port}");
    tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("tcp connect {addr}: {e}"))?;
    let client = access
        .client_options(Duration::from_secs(1))
        .connect(format!("nats://{addr}"))
        .await
        .map_err(|e| format!("nats connect {addr}: {e}"))?;
    drop(client);
    Ok(())
}

/// A NATS config string literal (JSON escaping is a subset the config parser accepts).
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
