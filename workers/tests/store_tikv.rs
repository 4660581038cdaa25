//! The storage conformance suite on a real TiKV cluster, when one is reachable: build with
//! `--features tikv` and set `PD_ADDRS` (comma-separated PD endpoints, e.g.
//! `PD_ADDRS=127.0.0.1:2379` for `tiup playground`). Each test works in its own key prefix,
//! so tests run in parallel on one cluster. Without `PD_ADDRS` (or without the feature) every
//! test prints `skipped: ...` and checks nothing: it is not a TiKV check.

#[cfg(feature = "tikv")]
#[macro_use]
mod conformance;

#[cfg(feature = "tikv")]
mod live {
    use super::conformance;
    use chatmesh_workers::config::TikvConfig;
    use chatmesh_workers::store::{Store, TikvStore};
    use tokio::sync::OnceCell;

    static CLIENT: OnceCell<TikvStore> = OnceCell::const_new();

    async fn fresh_store() -> Option<conformance::suite::Harness> {
        let Ok(pd) = std::env::var("PD_ADDRS") else {
            println!("skipped: PD_ADDRS not set (no TiKV cluster to test against)");
            return None;
        };
        let client = CLIENT
            .get_or_init(|| async {
                let cfg = TikvConfig {
                    pd_endpoints: pd.split(',').map(|s| s.trim().to_owned()).collect(),
                    keyspace: std::env::var("TIKV_KEYSPACE").ok(),
                    ..TikvConfig::default()
                };
                TikvStore::connect(&cfg)
                    .await
                    .expect("connecting to PD_ADDRS")
            })
            .await;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let prefix = format!("conformance/{nanos:032x}/{:016x}/", rand_u64());
        Some(conformance::suite::Harness {
            store: Store::Tikv(client.with_prefix(prefix.as_bytes())),
            _guard: Box::new(()),
        })
    }

    fn rand_u64() -> u64 {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(std::thread::current().id())
    }

    conformance_suite!(fresh_store);
}

/// Without the `tikv` feature there is no TiKV backend to check: says so.
#[cfg(not(feature = "tikv"))]
#[test]
fn tikv_suite_skipped_without_feature() {
    println!("skipped: built without `--features tikv` (and PD_ADDRS decides the rest)");
}
