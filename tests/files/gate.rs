//! A real S3 server (s3s-fs over a temp folder, SigV4 checked) whose requests a test can
//! hold: [`GatedS3::hold`] names a method and a test on the path; the first request that
//! matches waits (before it runs, or after it ran with its answer held) until the test
//! drops the [`Held`] it gets. That is how a test puts a worker's or a gateway's storage call
//! at the exact moment it needs, with every part real.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::Method;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

const ACCESS_KEY: &str = "AKIACHATMESHTEST";
const SECRET_KEY: &str = "chatmesh-test-secret-key-0123456789";
pub const BUCKET: &str = "chatmesh";

/// When a held request waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Before it runs.
    Before,
    /// After it ran, before its answer is sent.
    After,
}

type PathTest = Box<dyn Fn(&str) -> bool + Send>;

struct Rule {
    when: When,
    method: Method,
    path: PathTest,
    caught: mpsc::UnboundedSender<Held>,
}

/// A request caught by a rule: it goes on when this is dropped.
#[derive(Debug)]
pub struct Held {
    pub path: String,
    _release: oneshot::Sender<()>,
}

/// The requests of one rule, as they are caught.
pub struct Catches(mpsc::UnboundedReceiver<Held>);

impl Catches {
    /// The next caught request, within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Held> {
        tokio::time::timeout(wait, self.0.recv())
            .await
            .context("no request was caught in time")?
            .context("the S3 server stopped")
    }

    /// A request caught already, if any (it is released at once when dropped).
    pub fn caught(&mut self) -> Option<Held> {
        self.0.try_recv().ok()
    }
}

/// The S3 server and its rules.
pub struct GatedS3 {
    pub addr: SocketAddr,
    rules: Arc<Mutex<Vec<Rule>>>,
    tasks: JoinSet<()>,
}

impl GatedS3 {
    /// Starts s3s-fs on `root`, with the bucket folder made.
    pub async fn start(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join(BUCKET))?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?;
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let mut tasks = JoinSet::new();
        let gate = rules.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                let (service, gate) = (service.clone(), gate.clone());
                let gated = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let (service, gate) = (service.clone(), gate.clone());
                    async move {
                        let (req, method, paths) = requested(req).await;
                        let wait = |when| catch(&gate, when, &method, &paths);
                        if let Some(go) = wait(When::Before) {
                            let _ = go.await;
                        }
                        let answer = service.call(req).await;
                        if let Some(go) = wait(When::After) {
                            let _ = go.await;
                        }
                        answer
                    }
                });
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), gated)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Self { addr, rules, tasks })
    }

    /// Holds the first request with `method` whose path passes `path` (`/bucket/key`), at
    /// `when`; further ones go through.
    pub fn hold(
        &self,
        when: When,
        method: Method,
        path: impl Fn(&str) -> bool + Send + 'static,
    ) -> Catches {
        let (caught, catches) = mpsc::unbounded_channel();
        self.rules.lock().unwrap().push(Rule {
            when,
            method,
            path: Box::new(path),
            caught,
        });
        Catches(catches)
    }

    /// `[files]` options that reach this server, the files under `s3://BUCKET/shared`.
    pub fn config(&self, mut config: chatmesh::Config) -> chatmesh::Config {
        config.files.url = Some(format!("s3://{BUCKET}/shared"));
        for (k, v) in [
            ("aws_endpoint", format!("http://{}", self.addr)),
            ("aws_access_key_id", ACCESS_KEY.to_owned()),
            ("aws_secret_access_key", SECRET_KEY.to_owned()),
            ("aws_region", "us-east-1".to_owned()),
            ("aws_allow_http", "true".to_owned()),
        ] {
            config.files.options.insert(k.into(), v);
        }
        config
    }
}

impl Drop for GatedS3 {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// The request for s3s, and what it does as the rules see it: the method and the object
/// paths (`/bucket/key`). A multi-object delete (`POST /bucket?delete`, how object_store
/// deletes) is a `DELETE` of the keys its body names; other requests with a query are steps
/// of a multipart upload and name no object (no paths).
async fn requested(
    req: hyper::Request<hyper::body::Incoming>,
) -> (s3s::HttpRequest, Method, Vec<String>) {
    let path = req.uri().path().to_owned();
    match req.uri().query() {
        None => {
            let method = req.method().clone();
            (req.map(s3s::Body::from), method, vec![path])
        }
        Some("delete") => {
            let (parts, body) = req.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .map(http_body_util::Collected::to_bytes)
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let keys = text
                .split("<Key>")
                .skip(1)
                .filter_map(|k| k.split("</Key>").next())
                .map(|k| format!("{path}/{k}"))
                .collect();
            let req = hyper::Request::from_parts(parts, s3s::Body::from(bytes));
            (req, Method::DELETE, keys)
        }
        Some(_) => {
            let method = req.method().clone();
            (req.map(s3s::Body::from), method, Vec::new())
        }
    }
}

/// Takes the first rule that `method` and one of `paths` match at `when` (a rule catches
/// one request): what the request waits for, if one did.
fn catch(
    rules: &Mutex<Vec<Rule>>,
    when: When,
    method: &Method,
    paths: &[String],
) -> Option<oneshot::Receiver<()>> {
    let mut rules = rules.lock().unwrap();
    let (at, path) = rules.iter().enumerate().find_map(|(at, r)| {
        let path = paths.iter().find(|p| (r.path)(p))?;
        (r.when == when && r.method == method).then(|| (at, path.clone()))
    })?;
    let rule = rules.remove(at);
    let (release, go) = oneshot::channel();
    let held = Held {
        path,
        _release: release,
    };
    rule.caught.send(held).ok()?;
    Some(go)
}
