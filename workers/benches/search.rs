//! Full-text search on a room of 1,000,000 messages (one partition's index, on disk):
//! building the index (the time per message is printed once), the lag of a stored batch
//! (256 new messages applied and committed: what a search waits for beyond the commit
//! interval), and query latency: a word in every message, a word in one message in a
//! thousand, a word in one message, a phrase, and a word with a sender filter, 20 hits
//! each. Run: `cargo bench -p chatmesh-workers --bench search`.

use std::time::{Duration, Instant};

use chatmesh_protocol::search::SearchRequest;
use chatmesh_workers::model::Model;
use chatmesh_workers::search::{IndexOp, Indexes, SearchConfig};
use chatmesh_workers::store::{FjallMemory, FjallStore, FsyncPolicy, Store};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const MESSAGES: u64 = 1_000_000;
const BATCH: u64 = 256;
const WORDS: [&str; 16] = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "magna",
];

/// A body of about 100 bytes: common words, `chat` in every message, `rare<k>` in one in a
/// thousand, and `unique<seq>` in each.
fn body(seq: u64) -> String {
    let mut words: Vec<&str> = (0..12)
        .map(|i| WORDS[((seq * 7 + i * 13) % WORDS.len() as u64) as usize])
        .collect();
    words.push("chat");
    let mut s = words.join(" ");
    if seq.is_multiple_of(1_000) {
        s.push_str(&format!(" rare{}", seq % 7));
    }
    s.push_str(&format!(" unique{seq}"));
    s
}

fn ops(from: u64, to: u64) -> Vec<IndexOp> {
    (from..to)
        .map(|seq| IndexOp::Add {
            seq,
            room: "big".into(),
            from: if seq % 10 == 0 {
                "bob".into()
            } else {
                "ann".into()
            },
            ts: 1_700_000_000_000 + seq,
            body: body(seq),
        })
        .collect()
}

fn ask(q: &str) -> SearchRequest {
    SearchRequest {
        q: q.into(),
        rooms: vec!["big".into()],
        from: None,
        since: None,
        until: None,
        before: None,
        limit: 20,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FjallStore::open(
        &dir.path().join("store"),
        FsyncPolicy::Buffered,
        FjallMemory::default(),
    )
    .expect("open");
    let model = Model::new(Store::Fjall(store));
    let indexes = Indexes::new(&dir.path().join("search"), 1, &SearchConfig::default());
    let started = Instant::now();
    rt.block_on(async {
        let mut seq = 1;
        while seq <= MESSAGES {
            let to = (seq + 4_096).min(MESSAGES + 1);
            indexes
                .apply(&model, 0, to - 1, ops(seq, to))
                .await
                .expect("apply");
            seq = to;
        }
        indexes.commit().await.expect("commit");
    });
    let took = started.elapsed();
    println!(
        "indexed {MESSAGES} messages in {:.1} s: {:.1} µs per message (batches of 4,096, one commit)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / MESSAGES as f64
    );

    let mut g = c.benchmark_group("search_1m");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    let mut next = MESSAGES + 1;
    g.bench_function("lag: 256 messages applied and committed", |b| {
        b.iter(|| {
            rt.block_on(async {
                indexes
                    .apply(&model, 0, next + BATCH - 1, ops(next, next + BATCH))
                    .await
                    .expect("apply");
                indexes.commit().await.expect("commit");
            });
            next += BATCH;
        })
    });
    let cases = [
        ("every message", ask("chat")),
        ("one in a thousand", ask("rare3")),
        ("one message", ask("unique777777")),
        // Word i + 1 of a body is WORDS[(k + 13) % 16] after WORDS[k]: "lorem ut" occurs,
        // "lorem ipsum" never does.
        ("phrase", ask("\"lorem ut\"")),
        (
            "word from a sender",
            SearchRequest {
                from: Some("bob".into()),
                ..ask("dolor")
            },
        ),
    ];
    for (name, req) in cases {
        let hits = rt
            .block_on(indexes.search(req.clone()))
            .expect("search")
            .hits
            .len();
        assert!(hits > 0, "{name}: no hits");
        g.bench_with_input(BenchmarkId::new("query", name), &req, |b, req| {
            b.iter(|| rt.block_on(indexes.search(req.clone())).expect("search"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
