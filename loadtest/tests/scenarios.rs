//! The `history` and `mixed` scenarios against a real embedded mesh (nats-server child,
//! worker, fjall store, gateway): rooms filled through `send`, every page read and checked,
//! nothing failed; a second `history` run with the same run id reuses the filled rooms; in
//! `mixed` every member, idle ones included, gets every chat message once; in `files` every
//! upload is downloaded by another member with the same bytes while the chat is checked.

mod common;

use std::path::Path;

use serde_json::Value;

/// Runs the harness; returns its summary.json and stderr.
async fn loadtest(target: &str, dir: &Path, out: &str, args: &[&str]) -> (Value, String) {
    let out = dir.join(out);
    let child = common::harness(target, dir, &out)
        .args(["--duration", "3s", "--warmup", "1s", "--grace", "15s"])
        .args(["--progress-secs", "0", "--threshold", "errors==0"])
        .args(args)
        .spawn()
        .expect("loadtest binary runs");
    let done = common::finish(child, "run").await;
    let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
    (common::read(&out.join("summary.json")), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_are_read_and_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh = common::mesh(dir.path()).await;
    let target = format!("http://{}", mesh.gateway.addr);
    // 2 rooms of 120 messages, pages of 25: a walk is 5 pages (4 full, then 20 with
    // `more` false). 4 readers share 40 pages/s for 3 s: 30 pages, so 6 walks each.
    let args = [
        "--run-id",
        "histtest",
        "history",
        "--rooms",
        "2",
        "--readers",
        "4",
        "--messages-per-room",
        "120",
        "--page",
        "25",
        "--rate",
        "40",
    ];
    for (n, out) in ["first", "again"].iter().enumerate() {
        let (s, stderr) = loadtest(&target, dir.path(), out, &args).await;
        let c = &s["counts"];
        assert_eq!(s["scenario"], "history");
        assert_eq!(c["errors"], 0, "{s:#}");
        assert_eq!(c["history_scheduled"], 120, "{s:#}");
        assert_eq!(c["history_pages"], 120, "{s:#}");
        assert_eq!(c["history_failed"], 0);
        assert_eq!(c["history_walks"], 24, "{s:#}");
        assert_eq!(c["history_messages"], 24 * 120);
        assert_eq!(s["connections"]["held"], 4);
        // Timed from the scheduled time after the warm-up; in the summary and in goose's.
        let timed = s["latency_ms"]["history"]["count"].as_u64().unwrap_or(0);
        assert!(timed > 0 && timed <= 120, "{s:#}");
        assert!(
            s["rates"]["pages_per_s"].as_f64().unwrap_or(0.0) > 30.0,
            "{s:#}"
        );
        let html = std::fs::read_to_string(dir.path().join(out).join("goose-report.html"))
            .expect("goose report");
        assert!(html.contains("history"));
        // The first run fills the rooms through `send`; the second finds them full.
        let sent = if n == 0 { 240 } else { 0 };
        let fill = format!("2 rooms hold 120 fill messages each; {sent} sent");
        assert!(stderr.contains(&fill), "{stderr}");
    }
    mesh.stop().await.expect("mesh stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_users_chat_scroll_and_idle_in_one_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh = common::mesh(dir.path()).await;
    let target = format!("http://{}", mesh.gateway.addr);
    // 40 users in 4 rooms (10 each): 4 chatters at 40 sends/s in total, 4 scrollers at
    // 20 pages/s in total, 32 idle.
    let args = [
        "mixed",
        "--users",
        "40",
        "--rooms",
        "4",
        "--chatters-fraction",
        "0.1",
        "--scrollers-fraction",
        "0.1",
        "--rate",
        "40",
        "--history-rate",
        "20",
        "--messages-per-room",
        "60",
        "--page",
        "20",
        // Plain chat only here; edits, reactions and searches have their own test below.
        "--edits-fraction",
        "0",
        "--reactions-fraction",
        "0",
        "--search-rate",
        "0",
    ];
    let (s, _) = loadtest(&target, dir.path(), "mixed", &args).await;
    let c = &s["counts"];
    assert_eq!(s["scenario"], "mixed");
    assert_eq!(c["errors"], 0, "{s:#}");
    assert_eq!(c["scheduled"], 120);
    assert_eq!(c["acked"], 120, "{s:#}");
    // Every member of a room, chatters, scrollers and idle users alike, gets each message.
    assert_eq!(c["expected_deliveries"], 1200);
    assert_eq!(c["delivered"], 1200, "{s:#}");
    assert_eq!(c["loss"], 0);
    assert_eq!(c["duplicates"], 0);
    assert_eq!(c["prev_breaks"], 0);
    assert_eq!(c["history_scheduled"], 60);
    assert_eq!(c["history_pages"], 60, "{s:#}");
    assert_eq!(c["history_failed"], 0);
    // 15 pages per scroller, walks of 3 to 5 pages (60 fill messages plus up to 30 of chat):
    // at least 3 walks each.
    assert!(c["history_walks"].as_u64().unwrap_or(0) >= 12, "{s:#}");
    for op in ["ack", "deliver", "history"] {
        assert!(
            s["latency_ms"][op]["count"].as_u64().unwrap_or(0) > 0,
            "{op}: {s:#}"
        );
    }
    mesh.stop().await.expect("mesh stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_chat_has_edits_reactions_and_searches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh = common::mesh(dir.path()).await;
    let target = format!("http://{}", mesh.gateway.addr);
    // 40 users in 4 rooms (10 each): 4 chatters at 40 sends/s in total, of which about 10 %
    // edit and 30 % react; 10 searches/s for the 2 s after the warm-up.
    let args = [
        "mixed",
        "--users",
        "40",
        "--rooms",
        "4",
        "--chatters-fraction",
        "0.1",
        "--scrollers-fraction",
        "0.05",
        "--rate",
        "40",
        "--history-rate",
        "4",
        "--messages-per-room",
        "60",
        "--edits-fraction",
        "0.1",
        "--reactions-fraction",
        "0.3",
        "--search-rate",
        "10",
    ];
    let (s, stderr) = loadtest(&target, dir.path(), "mixed-changes", &args).await;
    let c = &s["counts"];
    assert_eq!(c["errors"], 0, "{s:#}");
    assert_eq!(c["scheduled"], 120);
    // Every send is acked: messages, edits and reactions alike.
    assert_eq!(c["acked"], 120, "{s:#}");
    let (edits, reactions) = (
        c["edits"].as_u64().unwrap(),
        c["reactions"].as_u64().unwrap(),
    );
    assert!(edits > 0 && reactions > 0, "{s:#}");
    // Messages and edits reach every member of the room once; reactions are in the `prev`
    // chain (no breaks) but never expected as deliveries.
    assert_eq!(c["expected_deliveries"], (120 - reactions) * 10, "{s:#}");
    assert_eq!(c["delivered"], c["expected_deliveries"], "{s:#}");
    assert_eq!(c["loss"], 0);
    assert_eq!(c["duplicates"], 0);
    assert_eq!(c["prev_breaks"], 0, "{s:#}");
    // 20 searches, each answered with the fill message it asked for.
    assert_eq!(c["searches_scheduled"], 20, "{s:#}");
    assert_eq!(c["searches"], 20, "{s:#}");
    assert_eq!(c["search_failed"], 0);
    assert_eq!(c["search_missed"], 0);
    assert!(
        stderr.contains("search: the index holds every room's fill"),
        "{stderr}"
    );
    for op in ["ack", "deliver", "edit_ack", "reaction_ack", "search"] {
        assert!(
            s["latency_ms"][op]["count"].as_u64().unwrap_or(0) > 0,
            "{op}: {s:#}"
        );
    }
    let md = std::fs::read_to_string(dir.path().join("mixed-changes").join("summary.md"))
        .expect("markdown summary");
    assert!(
        md.contains(&format!("{edits} edits and {reactions} reactions acked")),
        "{md}"
    );
    mesh.stop().await.expect("mesh stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_uploaded_downloaded_and_checked_beside_the_chat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh = common::mesh(dir.path()).await;
    let target = format!("http://{}", mesh.gateway.addr);
    // 2 rooms of 5 members chat at 20 sends/s while files of 200 KiB go up at 4/s for the
    // 2 s after the warm-up: 8 uploads, each downloaded by another member and compared.
    let args = [
        "files",
        "--rooms",
        "2",
        "--members",
        "5",
        "--rate",
        "20",
        "--uploads-per-second",
        "4",
        "--file-bytes",
        "204800",
    ];
    let (s, _) = loadtest(&target, dir.path(), "files", &args).await;
    let (c, f) = (&s["counts"], &s["files"]);
    assert_eq!(s["scenario"], "files");
    assert_eq!(c["errors"], 0, "{s:#}");
    assert_eq!(c["acked"], 60, "{s:#}");
    assert_eq!(c["loss"], 0);
    assert_eq!(f["scheduled"], 8, "{s:#}");
    assert_eq!(f["uploaded"], 8, "{s:#}");
    assert_eq!(f["downloaded"], 8, "{s:#}");
    assert_eq!(f["mismatched"], 0);
    for op in ["upload", "download", "deliver"] {
        assert!(
            s["latency_ms"][op]["count"].as_u64().unwrap_or(0) > 0,
            "{op}: {s:#}"
        );
    }
    mesh.stop().await.expect("mesh stops");
}
