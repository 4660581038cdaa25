//! The NATS bus is a trust boundary: the embedded mesh's nats-server admits only the keys
//! `chatmesh up` generated, each role may touch only its own subjects, monitoring stays on
//! loopback, and the bus can run over TLS. Each test attacks the bus the way a process on
//! the same machine or network would, with a real nats-server and the real mesh.

mod common;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_nats::{ConnectOptions, Event};
use chatmesh_protocol::bus::Role;
use chatmesh_protocol::service::{AddMemberRequest, HistoryRequest, Role as MemberRole};
use chatmesh_protocol::subjects::{in_subject, svc_subject, STREAM};
use common::{
    error_code, fast_config, frame, start_mesh, Api, Client, ErrorCode, ServerFrame, WAIT,
};
use futures::StreamExt as _;
use tokio::sync::mpsc;

/// A bus client of `role` that reports every error the server sends it (permission
/// violations arrive as such errors, not as failed calls).
struct BusClient {
    nats: async_nats::Client,
    errors: mpsc::UnboundedReceiver<String>,
}

impl BusClient {
    async fn connect(mesh: &chatmesh::Mesh, role: Role) -> Result<Self> {
        let seed = mesh.creds.seed(role)?;
        let (tx, errors) = mpsc::unbounded_channel();
        let nats = ConnectOptions::with_nkey(seed)
            .custom_inbox_prefix(role.inbox_prefix())
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if let Event::ServerError(e) = event {
                        let _ = tx.send(e.to_string());
                    }
                }
            })
            .connect(mesh.nats.url())
            .await?;
        Ok(Self { nats, errors })
    }

    /// Waits for the server to refuse something on `subject`.
    async fn violation(&mut self, subject: &str) -> Result<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let error = tokio::time::timeout_at(deadline, self.errors.recv())
                .await
                .with_context(|| format!("no permissions violation for {subject}"))?
                .context("client closed")?;
            if error.contains("Permissions Violation") && error.contains(subject) {
                return Ok(error);
            }
        }
    }
}

/// The last sequence of the message stream, read with the operators' key.
async fn stream_last_seq(mesh: &chatmesh::Mesh) -> Result<u64> {
    let admin = mesh.nats.connect().await?;
    let js = async_nats::jetstream::new(admin);
    let mut stream = js.get_stream(STREAM).await?;
    Ok(stream.info().await?.state.last_sequence)
}

/// A private room with one message in it, owned by `ann`.
async fn private_room(mesh: &chatmesh::Mesh) -> Result<()> {
    let api = Api::new(mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "secret", "private").await?;
    let mut c = Client::login(&mesh.ws_url(), &ann).await?;
    c.request(frame::join("secret")).await?;
    c.request(frame::send("secret", "s1", "the launch code"))
        .await?;
    Ok(())
}

/// A client without a key, or with a key the server does not know, cannot connect at all,
/// so it can neither call the history service of a private room nor write to the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_known_key_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    private_room(&mesh).await?;
    let opts = || ConnectOptions::new().connection_timeout(Duration::from_secs(2));
    let anonymous = opts().retry_on_initial_connect().max_reconnects(Some(1));
    let refused = anonymous.connect(mesh.nats.url()).await;
    let err = match refused {
        Ok(client) => {
            // Some versions accept the TCP connection and fail the first request instead.
            let subject = svc_subject(mesh.config.mesh.partitions, "secret", "history");
            let ask = HistoryRequest {
                room: "secret".into(),
                before: None,
                after: None,
                limit: 50,
            };
            let body = serde_json::to_vec(&ask)?;
            match tokio::time::timeout(Duration::from_secs(3), client.request(subject, body.into()))
                .await
            {
                Ok(Ok(reply)) => bail!(
                    "an anonymous client read a private room: {}",
                    String::from_utf8_lossy(&reply.payload)
                ),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".into(),
            }
        }
        Err(e) => e.to_string(),
    };
    assert!(!err.is_empty());
    let stranger = nkeys::KeyPair::new_user().seed()?;
    let forged = ConnectOptions::with_nkey(stranger)
        .connection_timeout(Duration::from_secs(2))
        .connect(mesh.nats.url())
        .await;
    assert!(forged.is_err(), "a key the server does not know connected");
    mesh.stop().await
}

/// The gateway's key sends and calls services (its job) but cannot answer service
/// requests (which would let it forge a worker's answers), consume the stream, change or
/// delete it, take a partition lease, or change the presence bucket's settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_key_cannot_act_as_a_worker() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    private_room(&mesh).await?;
    let mut gw = BusClient::connect(&mesh, Role::Gateway).await?;

    let _sub = gw.nats.subscribe("chat.svc.>").await?;
    gw.violation("chat.svc.>").await?;

    // Refused requests are never answered: a short timeout keeps the test quick.
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(gw.nats.clone());
    let consumer = async_nats::jetstream::consumer::pull::Config {
        durable_name: Some("thief".into()),
        ..Default::default()
    };
    let stream = js.get_stream_no_info(STREAM).await?;
    let created = tokio::time::timeout(WAIT, stream.create_consumer(consumer)).await?;
    assert!(created.is_err(), "a gateway created a consumer");
    gw.violation("$JS.API.CONSUMER").await?;

    let deleted = tokio::time::timeout(WAIT, js.delete_stream(STREAM)).await?;
    assert!(deleted.is_err(), "a gateway deleted the stream");
    gw.violation("$JS.API.STREAM.DELETE").await?;

    gw.nats
        .publish("$KV.CHAT_LEASES.p0", "gateway-thief".into())
        .await?;
    gw.violation("$KV.CHAT_LEASES.p0").await?;

    // The presence bucket: a gateway writes its keys but cannot change its settings (taking
    // the service subjects, or republishing on the workers' subjects).
    let mut presence = js.get_stream("KV_CHAT_PRESENCE").await?;
    let mut config = presence.info().await?.config.clone();
    config.subjects.push("chat.svc.>".into());
    let updated = tokio::time::timeout(WAIT, js.update_stream(config)).await?;
    assert!(updated.is_err(), "a gateway changed the presence bucket");
    gw.violation("$JS.API.STREAM.UPDATE.KV_CHAT_PRESENCE")
        .await?;

    // The room still works for its owner: nothing the attempts did took effect.
    assert!(stream_last_seq(&mesh).await? >= 1);
    mesh.stop().await
}

/// The worker's key cannot speak for a user: it cannot inject a message into the stream,
/// call a service as a gateway would (add itself to a private room as admin), send typing
/// or receipt events, or read the gateways' replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_key_cannot_impersonate_a_gateway_session() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    private_room(&mesh).await?;
    let before = stream_last_seq(&mesh).await?;
    let mut wk = BusClient::connect(&mesh, Role::Worker).await?;
    let partitions = mesh.config.mesh.partitions;

    let inject = in_subject(partitions, "secret");
    wk.nats
        .publish(inject.clone(), r#"{"from":"ann","body":"forged"}"#.into())
        .await?;
    wk.violation(&inject).await?;

    let add = svc_subject(partitions, "secret", "member_add");
    let req = AddMemberRequest {
        room: "secret".into(),
        user: "mallory".into(),
        role: MemberRole::Admin,
        actor: "ann".into(),
        invited_at: None,
    };
    wk.nats
        .publish(add.clone(), serde_json::to_vec(&req)?.into())
        .await?;
    wk.violation(&add).await?;

    wk.nats.publish("chat.evt.secret", "{}".into()).await?;
    wk.violation("chat.evt.secret").await?;

    let _replies = wk.nats.subscribe("_INBOX_gateway.>").await?;
    wk.violation("_INBOX_gateway.>").await?;

    wk.nats.flush().await?;
    assert_eq!(
        stream_last_seq(&mesh).await?,
        before,
        "a message was injected"
    );
    // mallory was not added: the owner's member list is unchanged, so she cannot join.
    let api = Api::new(&mesh);
    let mallory = api.user("mallory").await?;
    let mut m = Client::login(&mesh.ws_url(), &mallory).await?;
    let joined = m.request(frame::join("secret")).await?;
    assert_eq!(
        error_code(&joined),
        Some(ErrorCode::Forbidden),
        "{joined:?}"
    );
    mesh.stop().await
}

/// The load-test coordinator's key reaches only its own subjects: not live room traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loadtest_key_sees_no_chat_traffic() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let mut lt = BusClient::connect(&mesh, Role::Loadtest).await?;
    let _live = lt.nats.subscribe("chat.live.>").await?;
    lt.violation("chat.live.>").await?;
    let mut own = lt.nats.subscribe("chatmesh.loadtest.r1.ready").await?;
    lt.nats
        .publish("chatmesh.loadtest.r1.ready", "g1".into())
        .await?;
    let got = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut own)).await?;
    assert_eq!(got.context("closed")?.payload.as_ref(), b"g1");
    mesh.stop().await
}

/// The embedded nats-server listens on loopback only, monitoring included, and its config
/// carries public keys, never a seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_listens_on_loopback_with_public_keys_only() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let conf = std::fs::read_to_string(mesh.nats.store_dir().join("nats-server.conf"))?;
    assert!(conf.contains("host: \"127.0.0.1\""), "{conf}");
    assert!(conf.contains("http: \"127.0.0.1:"), "{conf}");
    assert!(conf.contains("authorization {"), "{conf}");
    for role in Role::ALL {
        assert!(
            !conf.contains(&mesh.creds.seed(role)?),
            "{role:?} seed in the config"
        );
    }
    mesh.stop().await
}

/// A certificate authority and a server certificate for 127.0.0.1, made for one test.
fn test_pki(dir: &std::path::Path) -> Result<natsd::Tls> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?
        .signed_by(&key, &issuer)?;
    let tls = natsd::Tls {
        cert: dir.join("nats.pem"),
        key: dir.join("nats.key"),
        ca: dir.join("ca.pem"),
    };
    std::fs::write(&tls.cert, cert.pem())?;
    std::fs::write(&tls.key, key.serialize_pem())?;
    std::fs::write(&tls.ca, ca.pem())?;
    Ok(tls)
}

/// With TLS on the bus, the gateway and the worker connect over TLS (a send is stored and
/// acked, then read back from history) and a plain-text client is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_runs_over_tls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = tempfile::tempdir()?;
    let tls = test_pki(pki.path())?;
    let mesh = chatmesh::Mesh::start(chatmesh::MeshOptions {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        nats_port: None,
        nats_tls: Some(tls),
        nats_threads: None,
        config: fast_config(),
    })
    .await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "tls", "public").await?;
    let mut c = Client::login(&mesh.ws_url(), &ann).await?;
    c.request(frame::join("tls")).await?;
    let ack = c.request(frame::send("tls", "t1", "over tls")).await?;
    assert!(matches!(ack, ServerFrame::Ack { .. }), "{ack:?}");
    c.wait_for(|f| matches!(f, ServerFrame::Message(m) if m.id == "t1"))
        .await?;
    // The worker stores it after the ack (over the TLS bus too): poll history until then.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = c.request(frame::history_before("tls", None, 10)).await?;
        // Not a page (an error) counts as an empty one, as in any poll.
        let first = match &page {
            ServerFrame::History { messages, .. } => messages.first(),
            _ => None,
        };
        if first.is_some_and(|m| m.body == "over tls") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not stored: {page:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let plain = ConnectOptions::with_nkey(mesh.creds.seed(Role::Admin)?)
        .connection_timeout(Duration::from_secs(2))
        .connect(mesh.nats.url())
        .await;
    assert!(plain.is_err(), "a plain-text client connected to a TLS bus");
    mesh.stop().await
}

/// The embedded nats-server killed under a running mesh (a crash, the OOM killer) is
/// started again on its store and ports: delivery resumes instead of stopping behind a
/// gateway that still answers. A client sends before and after, and history has every
/// acked message once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_embedded_nats_server_is_started_again() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "hall", "public").await?;
    let mut c = Client::login(&mesh.ws_url(), &ann).await?;
    c.join("hall").await?;
    let before = c.post("hall", "before", "before the crash").await?;

    let old = mesh.nats.pid().context("nats-server runs")?;
    std::process::Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let new = loop {
        match mesh.nats.pid() {
            Some(pid) if pid != old => break pid,
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nats-server not started again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(std::path::Path::new(&format!("/proc/{new}")).exists());

    // The session may have ended with the bus; a client reconnects, as any client does.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let attempt = async {
            let mut c = Client::login(&mesh.ws_url(), &ann).await?;
            c.join("hall").await?;
            let acked = c.post("hall", "after", "after the crash").await?;
            anyhow::Ok((c, acked))
        };
        let failed = match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(done)) => break done,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 5 s".to_owned(),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "no send after the restart: {failed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (mut c, after) = after;
    assert!(after.seq > before.seq, "{before:?} then {after:?}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = c.request(frame::history_before("hall", None, 10)).await?;
        let ids: Vec<String> = match &page {
            ServerFrame::History { messages, .. } => {
                messages.iter().map(|m| m.id.to_string()).collect()
            }
            _ => Vec::new(),
        };
        if ids == ["before", "after"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history after the restart: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    mesh.stop().await
}

/// `/readyz` asks the stream's leader, not just the NATS connection: with the stream gone
/// (deleted, or leaderless after a lost quorum) every send would fail, so a load balancer
/// must take the gateway out. A flood of `/readyz` asks JetStream at most once a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_when_the_stream_does_not_answer() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let http = reqwest::Client::new();
    let readyz = || async {
        let r = http.get(format!("{}/readyz", mesh.url())).send().await?;
        anyhow::Ok((r.status().as_u16(), r.text().await?))
    };
    assert_eq!(readyz().await?, (200, "ready".to_owned()));

    let admin = mesh.nats.connect().await?;
    let js = async_nats::jetstream::new(admin.clone());
    let info_requests = admin
        .subscribe(format!("$JS.API.STREAM.INFO.{STREAM}"))
        .await?;
    js.delete_stream(STREAM).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last;
    loop {
        last = readyz().await?;
        if last.0 == 503 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz with the stream deleted: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last, (503, "jetstream: stream not reachable".to_owned()));

    // 200 calls at once, the last answer a second old: they share one check (or two, the
    // next second's), not one each.
    let mut info_requests = info_requests;
    while tokio::time::timeout(Duration::from_millis(100), info_requests.next())
        .await
        .is_ok()
    {}
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let calls: Vec<_> = (0..200).map(|_| readyz()).collect();
    for answer in futures::future::join_all(calls).await {
        assert_eq!(answer?.0, 503);
    }
    let mut asked = 0;
    while let Ok(Some(m)) =
        tokio::time::timeout(Duration::from_millis(300), info_requests.next()).await
    {
        let from_gateway = m
            .reply
            .is_some_and(|r| r.starts_with(Role::Gateway.inbox_prefix()));
        asked += usize::from(from_gateway);
    }
    assert!(
        (1..=3).contains(&asked),
        "{asked} STREAM.INFO requests from the gateway for 200 /readyz calls"
    );
    mesh.stop().await
}
