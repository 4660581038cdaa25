//! The `chatmesh` binary as an operator runs it: `up` prints its URLs, serves the web
//! client and the health endpoints, and drains on SIGTERM; `--check-config` reports every
//! problem at once.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use common::process::*;
use common::*;

/// `chatmesh up` starts the embedded mesh, prints the web client URL, serves `/`, `/healthz`,
/// `/readyz` and `/metrics`; SIGTERM closes sessions with 1001, stops the nats-server child
/// and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_and_drains_on_sigterm() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("stderr.log");
    let mut child = up(dir.path())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()?;
    let _reap = Reap(child.id());
    let url = web_client_url(&mut child).await?;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{url}{path}")).send();
    assert_eq!(get("/healthz").await?.status(), 200);
    assert_eq!(get("/readyz").await?.status(), 200);
    let page = get("/").await?;
    assert_eq!(page.status(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .context("CSP header")?
        .to_str()?
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let page = page.text().await?;
    assert!(page.contains("chatmesh"));
    // HEAD is answered like GET, without the body.
    let head = http.head(format!("{url}/")).send().await?;
    assert_eq!(head.status(), 200);
    let length = head
        .headers()
        .get("content-length")
        .context("content-length")?;
    assert_eq!(length.to_str()?, page.len().to_string());
    assert!(head.bytes().await?.is_empty());
    assert_eq!(
        http.head(format!("{url}/healthz")).send().await?.status(),
        200
    );

    let api = Api::at(&url);
    let token = api.user("ann").await?;
    let ws = format!("{}/v1/ws", url.replacen("http", "ws", 1));
    let mut client = Client::login(&ws, &token).await?;
    let metrics = get("/metrics").await?.text().await?;
    assert!(
        metrics.contains("chatmesh_sessions"),
        "metrics list sessions"
    );

    let nats_pids = child_pids(child.id());
    assert!(!nats_pids.is_empty(), "a nats-server child runs");
    // CPU of the process and of its nats-server child, for CPU per message in load tests.
    let cpu = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    assert!(
        cpu("chatmesh_process_cpu_seconds ").is_some_and(|s| s > 0.0),
        "{metrics}"
    );
    assert!(
        cpu("chatmesh_child_cpu_seconds{child=\"nats-server\"}").is_some_and(|s| s >= 0.0),
        "{metrics}"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert_eq!(client.ended().await, Ended::Closed(1001));
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(status.success(), "exit status {status}");
    // Logs written to a file carry no terminal colour codes.
    let log = std::fs::read_to_string(&log_path)?;
    assert!(log.contains("INFO"), "the log has lines: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file: {log:?}"
    );
    for pid in nats_pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid),
            "nats-server {pid} stopped"
        );
    }
    Ok(())
}

/// `chatmesh up` whose worker stops by itself (here: the stream made again under it, which
/// it must not consume from its checkpoints) stops the rest too and exits non-zero, so that
/// its supervisor starts it again. Before, its gateway went on acking sends into JetStream
/// that nothing stored, and the process ran on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_exits_when_its_worker_stops() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("stderr.log");
    let mut child = up(dir.path())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()?;
    let _reap = Reap(child.id());
    let urls = up_urls(&mut child).await?;
    let api = Api::at(&urls.web);
    let ann = api.user("ann").await?;
    api.room(&ann, "general", "public").await?;
    let ws = format!("{}/v1/ws", urls.web.replacen("http", "ws", 1));
    let mut a = Client::login(&ws, &ann).await?;
    a.join("general").await?;
    for i in 0..3 {
        a.post("general", &format!("m{i}"), "hello").await?;
    }
    // A history read answers once the store holds them.
    let (s, v) = api
        .call("GET", "/v1/rooms/general/messages", Some(&ann), None)
        .await?;
    assert_eq!(s, 200, "{v}");

    let seed = std::fs::read_to_string(dir.path().join("data/creds/admin.nk"))?;
    let admin = async_nats::ConnectOptions::with_nkey(seed.trim().to_owned())
        .connect(urls.nats.as_str())
        .await?;
    let js = async_nats::jetstream::new(admin);
    let config = js.get_stream("CHAT").await?.cached_info().config.clone();
    js.delete_stream("CHAT").await?;
    js.create_stream(config).await?;
    // Into the new stream, below the store's checkpoint (the send may or may not be acked).
    let _ = tokio::time::timeout(WAIT, a.post("general", "m-new", "again")).await;
    let status = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .context("up ran on without its worker")???;
    assert!(!status.success(), "exit status {status}");
    let log = std::fs::read_to_string(&log_path)?;
    assert!(log.contains("the worker stopped"), "{log}");
    Ok(())
}

/// Ctrl-C in a terminal signals the whole foreground process group. `up` drains first and
/// stops its nats-server last: the server, in a group of its own, does not quit under the
/// draining sessions and store writers (it did, and the stop then took minutes, every
/// partition's lease release timing out on a dead bus).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_to_the_terminal_drains_up_before_its_nats_server_stops() -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("stderr.log");
    // The test stands in for the terminal: `up` leads a group, as a shell's job would.
    let mut child = up(dir.path())
        .process_group(0)
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()?;
    let _reap = Reap(child.id());
    let url = web_client_url(&mut child).await?;
    let token = Api::at(&url).user("ann").await?;
    let ws = format!("{}/v1/ws", url.replacen("http", "ws", 1));
    let mut client = Client::login(&ws, &token).await?;
    let pid = child.id();
    let signalled = std::time::Instant::now();
    Command::new("kill")
        .args(["-INT", "--", &format!("-{pid}")])
        .status()?;
    assert_eq!(client.ended().await, Ended::Closed(1001));
    let waited = tokio::task::spawn_blocking(move || child.wait());
    let status = tokio::time::timeout(Duration::from_secs(60), waited)
        .await
        .context("up still running 60 s after Ctrl-C")???;
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    let log = std::fs::read_to_string(&log_path)?;
    assert!(
        !log.contains("NATS disconnected") && !log.contains("store writer restarts"),
        "the bus went away under the drain: {log}"
    );
    assert!(took < Duration::from_secs(20), "stopping took {took:?}");
    Ok(())
}

/// A second Ctrl-C (or SIGTERM) while `up` drains stops it at once, with status 130, and its
/// nats-server goes too (its watchdog sees `up` gone). Here the drain waits on a client that
/// never answers the close (drain and linger times of a minute); before, a second Ctrl-C
/// did nothing and only SIGKILL stopped such a drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_stops_a_slow_drain_at_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut child = up(dir.path())
        .env("CHATMESH__GATEWAY__DRAIN_TIMEOUT_MS", "60000")
        .env("CHATMESH__GATEWAY__CLOSE_LINGER_MS", "60000")
        .stderr(Stdio::null())
        .spawn()?;
    let _reap = Reap(child.id());
    let url = web_client_url(&mut child).await?;
    let token = Api::at(&url).user("ann").await?;
    let ws = format!("{}/v1/ws", url.replacen("http", "ws", 1));
    // Logged in, then never read again: the drain's close is never answered.
    let _silent = Client::login(&ws, &token).await?;
    let pid = child.id();
    let nats: Vec<u32> = child_pids(pid);
    assert!(!nats.is_empty(), "up has no nats-server child");
    let int = || {
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
    };
    int()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(child.try_wait()?.is_none(), "the drain did not wait");
    let second = std::time::Instant::now();
    int()?;
    let waited = tokio::task::spawn_blocking(move || child.wait());
    let status = tokio::time::timeout(Duration::from_secs(30), waited)
        .await
        .context("up still running 30 s after a second Ctrl-C")???;
    let took = second.elapsed();
    assert_eq!(status.code(), Some(130), "exit status {status}");
    assert!(took < Duration::from_secs(5), "stopped {took:?} after it");
    let gone = |p: &u32| !std::path::Path::new(&format!("/proc/{p}")).exists() || is_zombie(*p);
    for _ in 0..100 {
        if nats.iter().all(gone) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("nats-server {nats:?} still running 10 s after up was stopped")
}

/// `--check-config` lists every problem of the file and the environment, and exits non-zero;
/// a good config passes.
#[test]
fn check_config_reports_every_problem() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[mesh]\npartitions = 0\n[gateway]\nlisten = \"nowhere\"\njwt_secret = \"short\"\n",
    )?;
    let out = chatmesh()
        .args(["--check-config", "--config"])
        .arg(&bad)
        .arg("gateway")
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    for needle in ["mesh.partitions", "gateway.listen", "gateway.jwt_secret"] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[gateway]\nlisten_on = \"x\"\n")?;
    let out = chatmesh()
        .args(["--check-config", "--config"])
        .arg(&unknown)
        .arg("gateway")
        .output()?;
    assert!(!out.status.success(), "unknown keys are refused");

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!("[gateway]\njwt_secret = \"{}\"\n", "s".repeat(40)),
    )?;
    let out = chatmesh()
        .args(["--check-config", "--config"])
        .arg(&good)
        .arg("gateway")
        .env("CHATMESH__GATEWAY__LISTEN", "127.0.0.1:9999")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = chatmesh()
        .args(["--check-config", "--config"])
        .arg(&good)
        .arg("gateway")
        .env("CHATMESH__GATEWAY__LISTEN", "not an address")
        .output()?;
    assert!(!out.status.success(), "the environment overrides the file");
    Ok(())
}

/// The binary's allocator is chosen per command: mimalloc for `up`, `worker` and `notifier`,
/// the system's for `gateway` (whatever the global options before it), and
/// `CHATMESH_ALLOCATOR` overrides it; the first log line names it.
#[test]
fn the_allocator_is_chosen_per_command() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!("[gateway]\njwt_secret = \"{}\"\n", "s".repeat(40)),
    )?;
    for (command, over, want) in [
        ("worker", None, "mimalloc"),
        ("notifier", None, "mimalloc"),
        ("gateway", None, "system"),
        ("gateway", Some("mimalloc"), "mimalloc"),
        ("worker", Some("system"), "system"),
    ] {
        let mut cmd = chatmesh();
        cmd.args(["--check-config", "--config"])
            .arg(&good)
            .arg(command)
            .env_remove("CHATMESH_ALLOCATOR");
        if let Some(over) = over {
            cmd.env("CHATMESH_ALLOCATOR", over);
        }
        let out = cmd.output()?;
        let err = String::from_utf8(out.stderr)?;
        assert!(
            err.contains(&format!("allocator=\"{want}\"")),
            "{command} with {over:?}: expected {want} in:\n{err}"
        );
    }
    Ok(())
}

/// With `CHATMESH__LOG__FORMAT=json` every log line of `chatmesh up` is one JSON object with
/// timestamp, level, target and message, and an event inside a span carries the span's
/// fields (the store writer's `partition`); `--log-format` overrides the setting, and a
/// format that does not exist is a configuration error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_span_fields() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("stderr.log");
    let mut child = up(dir.path())
        .env("CHATMESH__LOG__FORMAT", "json")
        .env("RUST_LOG", "info,chatmesh_workers::consumer=debug")
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()?;
    let _reap = Reap(child.id());
    web_client_url(&mut child).await?;
    // The store writers log "consuming" once their consumers exist.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log_path)?.contains("store writer consuming")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    let lines = std::fs::read_to_string(&log_path)?;
    assert!(status.success(), "exit status {status}, log:\n{lines}");
    let mut in_span = 0;
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("not one JSON object per line: {line:?}"))?;
        for key in ["timestamp", "level", "target"] {
            assert!(v[key].is_string(), "{key} missing: {line}");
        }
        assert!(v["message"].is_string(), "message missing: {line}");
        if v["message"] == "store writer consuming" {
            assert_eq!(v["span"]["name"], "store_writer", "{line}");
            assert!(v["span"]["partition"].is_u64(), "{line}");
            assert!(v["spans"].is_array(), "{line}");
            in_span += 1;
        }
    }
    assert!(in_span > 0, "no store writer line in:\n{lines}");

    let out = chatmesh()
        .args(["--check-config", "gateway"])
        .env("CHATMESH__LOG__FORMAT", "xml")
        .output()?;
    assert!(!out.status.success(), "an unknown log format is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("xml"));
    let out = chatmesh()
        .args(["--log-format", "yaml", "--check-config", "gateway"])
        .output()?;
    assert!(!out.status.success(), "--log-format takes text or json");
    Ok(())
}

/// `chatmesh up` whose stdout reader went away after the URL (`chatmesh up | head -3`) still
/// drains and exits 0 on SIGTERM: a failed status line must not stop the mesh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_drains_when_its_stdout_is_gone() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut child = up(dir.path()).stderr(Stdio::null()).spawn()?;
    let _reap = Reap(child.id());
    let stdout = child.stdout.take().context("stdout")?;
    // Reads up to the URL, then drops the pipe's read end.
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("web client:"))
    });
    assert!(tokio::time::timeout(Duration::from_secs(60), ready).await??);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

/// A SIGKILLed `up` runs no code at all: its nats-server's watchdog stops the orphaned
/// server within seconds, so it does not keep the ports and the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_up_leaves_no_nats_server_behind() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut child = up(dir.path()).stderr(Stdio::null()).spawn()?;
    let _reap = Reap(child.id());
    web_client_url(&mut child).await?;
    let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let nats: Vec<u32> = child_pids(child.id())
        .into_iter()
        .filter(|p| comm(*p).trim() == "nats-server")
        .collect();
    assert_eq!(nats.len(), 1, "one nats-server child");
    let server = nats[0];
    // If the watchdog fails, the orphan is still ours to end (by its pid, checked by name).
    let _orphan = Reap(server);
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()?;
    tokio::task::spawn_blocking(move || child.wait()).await??;
    let alive = |pid: u32| comm(pid).trim() == "nats-server" && !is_zombie(pid);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while alive(server) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !alive(server),
        "nats-server {server} outlived its killed parent"
    );
    Ok(())
}

/// `chatmesh notifier` runs only beside workers that share a store: with the embedded store
/// (the default) it refuses at once, saying where the notifier runs instead; so does
/// `--check-config`.
#[test]
fn notifier_refuses_an_embedded_store() -> Result<()> {
    for args in [&["notifier"][..], &["--check-config", "notifier"][..]] {
        let out = chatmesh()
            .args(args)
            .env("CHATMESH__GATEWAY__JWT_SECRET", "x".repeat(32))
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            err.contains("backend = \"tikv\"") && err.contains("in_worker"),
            "{args:?}: {err}"
        );
    }
    Ok(())
}

/// A standalone `chatmesh worker` with `[metrics] listen` serves Prometheus metrics
/// (its partitions included) and stops on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_worker_serves_metrics() -> Result<()> {
    let nats = natsd::NatsServer::start_temp().await?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = chatmesh()
        .arg("worker")
        .env("CHATMESH__MESH__NATS_URLS", format!("[\"{}\"]", nats.url()))
        .env("CHATMESH__WORKER__DATA_DIR", dir.path())
        .env("CHATMESH__METRICS__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let _reap = Reap(child.id());
    let deadline = std::time::Instant::now() + WAIT;
    let body = loop {
        let got = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await;
        if let Ok(resp) = got {
            let text = resp.text().await?;
            if text.contains("chatmesh_partitions_owned") {
                break text;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no worker metrics");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("chatmesh_partitions_owned 16"), "{body}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

/// A local OTLP/HTTP receiver: every JSON body POSTed to it, kept in order.
async fn otlp_receiver() -> Result<(
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
)> {
    use http_body_util::BodyExt;
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/traces", listener.local_addr()?);
    let keep = got.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let keep = keep.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if let Ok(v) = serde_json::from_slice(&body) {
                                keep.lock().unwrap().push(v);
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(hyper::body::Bytes::from_static(b"{}")),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    Ok((url, got))
}

/// Every span object in OTLP JSON bodies: (name, traceId, spanId, parentSpanId).
fn spans(bodies: &[serde_json::Value]) -> Vec<(String, String, String, String)> {
    fn walk(v: &serde_json::Value, out: &mut Vec<(String, String, String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                if let (Some(name), Some(span)) = (m.get("name"), m.get("spanId")) {
                    let s = |k: &str| m.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
                    out.push((
                        name.as_str().unwrap_or("").to_owned(),
                        s("traceId"),
                        span.as_str().unwrap_or("").to_owned(),
                        s("parentSpanId"),
                    ));
                }
                m.values().for_each(|x| walk(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    bodies.iter().for_each(|b| walk(b, &mut out));
    out
}

/// `[trace] otlp_endpoint`: a send is one trace across the mesh: `send` on the gateway (to
/// the ack), `store` on the worker and `fanout` on the gateway, both children of `send`,
/// carried through NATS in the message's headers; exported to a local OTLP receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_one_trace_through_the_mesh() -> Result<()> {
    let (endpoint, got) = otlp_receiver().await?;
    let dir = tempfile::tempdir()?;
    let mut child = up(dir.path())
        .env("CHATMESH__TRACE__OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stderr(Stdio::null())
        .spawn()?;
    let _reap = Reap(child.id());
    let url = web_client_url(&mut child).await?;
    let api = Api::at(&url);
    let token = api.user("ann").await?;
    api.room(&token, "traced", "private").await?;
    let ws = format!("{}/v1/ws", url.replacen("http", "ws", 1));
    let mut client = Client::login(&ws, &token).await?;
    client.join("traced").await?;
    client.post("traced", "t1", "hello, traces").await?;
    client.messages("traced", 1).await?;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = spans(&got.lock().unwrap());
        let send = all.iter().find(|s| s.0 == "send");
        if let Some((_, trace, send_id, _)) = send {
            let child_of_send = |name: &str| {
                all.iter()
                    .any(|s| s.0 == name && &s.1 == trace && &s.3 == send_id)
            };
            if child_of_send("store") && child_of_send("fanout") {
                assert!(!trace.is_empty() && !send_id.is_empty());
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no send -> store, fanout trace among {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bodies = format!("{:?}", got.lock().unwrap());
    assert!(bodies.contains("chatmesh"), "service.name is chatmesh");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    tokio::task::spawn_blocking(move || child.wait()).await??;
    Ok(())
}
