//! Cache hits on the paths every send and history read take: the membership cache (moka
//! behind the coherent epoch check the workers use) and a plain moka page lookup.

use std::sync::Arc;

use chatmesh_benches::rooms;
use chatmesh_protocol::service::Role;
use chatmesh_workers::cache::Coherent;
use chatmesh_workers::StoreError;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use moka::future::Cache;
use std::hint::black_box;

fn moka_hits(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let rooms = rooms(1000);
    let access: Coherent<Option<Role>> = Coherent::new(100_000);
    let pages: Cache<String, Arc<Vec<u8>>> = Cache::new(10_000);
    rt.block_on(async {
        for r in &rooms {
            let _ = access
                .get_or_load(r, "alice_01", || async {
                    Ok::<_, StoreError>(Some(Role::Member))
                })
                .await;
            pages.insert(r.clone(), Arc::new(vec![0; 4096])).await;
        }
    });
    let mut g = c.benchmark_group("moka_hits");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("membership_coherent", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % rooms.len();
            let room = &rooms[i];
            let access = &access;
            async move {
                access
                    .get_or_load(black_box(room), "alice_01", || async {
                        Err::<Option<Role>, _>(StoreError::Stopped("a warm cache never loads"))
                    })
                    .await
            }
        })
    });
    let mut j = 0usize;
    g.bench_function("page_get", |b| {
        b.to_async(&rt).iter(|| {
            j = (j + 1) % rooms.len();
            let (room, pages) = (&rooms[j], &pages);
            async move { pages.get(black_box(room)).await }
        })
    });
    g.finish();
}

criterion_group!(benches, moka_hits);
criterion_main!(benches);
