//! `chatmesh export` and `chatmesh import`: the thin command side of
//! [`chatmesh_workers::export`]. They open the worker's store directly (`--data DIR` or the
//! worker config), so the worker must be stopped: the embedded store refuses a second opener
//! and the command says so. Progress goes to stderr; the export itself to stdout or `--out`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek as _, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use chatmesh_workers::export::{export_room, import_room};
use chatmesh_workers::model::Model;
use chatmesh_workers::{open_store, KvStore, WorkerConfig};

/// The store of `cfg` (or of `data`); `existing`: refuse to create a new one.
async fn model(cfg: &WorkerConfig, data: Option<PathBuf>, existing: bool) -> anyhow::Result<Model> {
    let mut cfg = cfg.clone();
    if let Some(dir) = data {
        cfg.data_dir = dir;
    }
    if existing && cfg.backend == chatmesh_workers::Backend::Fjall && !cfg.data_dir.is_dir() {
        anyhow::bail!("no store at {}", cfg.data_dir.display());
    }
    let store = open_store(&cfg).await.context("opening the store")?;
    Ok(Model::new(store))
}

/// Writes `room` as JSON Lines to `out` (stdout if `None`).
pub async fn export(
    cfg: &WorkerConfig,
    data: Option<PathBuf>,
    room: &str,
    out: Option<PathBuf>,
    every: u64,
) -> anyhow::Result<()> {
    let model = model(cfg, data, true).await?;
    let mut progress = |n: u64| eprintln!("exported {n} messages");
    let moved = match &out {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let mut w = BufWriter::new(file);
            let moved = export_room(&model, room, &mut w, every, &mut progress).await?;
            w.into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
                .context("syncing the export")?;
            moved
        }
        None => {
            let mut w = BufWriter::new(std::io::stdout().lock());
            let moved = export_room(&model, room, &mut w, every, &mut progress).await?;
            w.flush()?;
            moved
        }
    };
    eprintln!(
        "exported room {room}: {} members, {} messages",
        moved.members, moved.messages
    );
    Ok(())
}

/// Reads one export from `input` (stdin if `None`, kept in a temporary file: import reads
/// the file twice, checking it whole before it writes) into the store.
pub async fn import(
    cfg: &WorkerConfig,
    data: Option<PathBuf>,
    input: Option<PathBuf>,
    every: u64,
) -> anyhow::Result<()> {
    let model = model(cfg, data, false).await?;
    let mut progress = |n: u64| eprintln!("imported {n} messages");
    let (room, moved) = match &input {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            import_room(&model, BufReader::new(file), every, &mut progress).await?
        }
        None => {
            let mut spool = tempfile::tempfile().context("making a temporary file for stdin")?;
            std::io::copy(&mut std::io::stdin().lock(), &mut spool)
                .context("reading the export from stdin")?;
            spool.rewind().context("reading the export back")?;
            import_room(&model, BufReader::new(spool), every, &mut progress).await?
        }
    };
    model.store().flush().await?;
    eprintln!(
        "imported room {room}: {} members, {} messages",
        moved.members, moved.messages
    );
    Ok(())
}
