//! The cost of one MLS commit in an e2ee room (chatmesh-e2ee, openmls, pure-Rust crypto) in
//! groups of 10, 100 and 1,000 members: making it (a self-update; adding one member) on the
//! committer, and processing it on another member. Each size's group is built once (its
//! creator adds everyone in one commit; one other member joins by the welcome).

use std::cell::RefCell;

use chatmesh_e2ee::{
    ClaimedPackage, Device, DeviceInfo, Event, Incoming, UserDevices, VerifiedKeyPackage,
};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

const ROOM: &str = "bench";
const SIZES: [usize; 3] = [10, 100, 1_000];

/// A fresh device of a fresh user, and its KeyPackage as `committer` verifies it from the
/// directory.
fn newcomer(committer: &mut Device, user: &str) -> (Device, VerifiedKeyPackage) {
    let mut device = Device::ephemeral(user, "d").unwrap();
    let upload = device.key_packages(1, false).unwrap();
    let record = device.device_record();
    let users = UserDevices {
        user: user.to_owned(),
        identity: Some(device.identity_public()),
        devices: vec![DeviceInfo {
            device: "d".into(),
            signature_key: record.signature_key,
            signature: record.signature,
            key_packages: 1,
            last_resort: false,
        }],
    };
    let claims = [ClaimedPackage {
        device: "d".into(),
        key_package: upload.key_packages[0].clone(),
        last_resort: false,
    }];
    let mut verified = committer.verify_claims(&users, &claims).unwrap();
    (device, verified.pop().unwrap())
}

/// The group of `n` members: the committer and one receiver (the others' devices dropped),
/// and the seq of the room's last message.
struct Fixture {
    committer: Device,
    receiver: RefCell<Device>,
    seq: u64,
    joined: usize,
    /// Newcomers made so far (each needs a user name of its own).
    made: usize,
}

impl Fixture {
    fn new(n: usize) -> Self {
        let mut committer = Device::ephemeral("u0", "d").unwrap();
        committer.create_group(ROOM).unwrap();
        let mut receiver = None;
        let mut packages = Vec::with_capacity(n - 1);
        for i in 1..n {
            let (device, package) = newcomer(&mut committer, &format!("u{i}"));
            if i == 1 {
                receiver = Some(device);
            }
            packages.push(package);
        }
        let staged = committer.stage_add(ROOM, &packages).unwrap();
        committer.confirm_commit(ROOM, 1).unwrap();
        let update = committer.stage_self_update(ROOM).unwrap();
        committer.abort_commit(ROOM).unwrap();
        // what the server would have to relay (its limit is MAX_MLS_CHARS of base64)
        println!(
            "mls_commit: {n} members: add-all commit {} chars, welcome {} chars, self-update commit {} chars (limit {})",
            staged.commit.data.len(),
            staged.welcome.as_ref().unwrap().data.len(),
            update.commit.data.len(),
            chatmesh_e2ee::MAX_MLS_CHARS,
        );
        let mut receiver = receiver.unwrap();
        let welcome = Incoming {
            room: ROOM.into(),
            seq: 2,
            from: "u0".into(),
            mls: staged.welcome.unwrap(),
        };
        assert!(matches!(
            receiver.process(&welcome).unwrap(),
            Event::Joined { .. }
        ));
        Fixture {
            committer,
            receiver: RefCell::new(receiver),
            seq: 2,
            joined: 0,
            made: 0,
        }
    }

    /// The committer's commit, merged, as the receiver gets it.
    fn incoming(&mut self, staged: chatmesh_e2ee::Staged) -> Incoming {
        self.seq += 1;
        self.committer.confirm_commit(ROOM, self.seq).unwrap();
        Incoming {
            room: ROOM.into(),
            seq: self.seq,
            from: "u0".into(),
            mls: staged.commit,
        }
    }

    /// Removes the member the last add added (so the group stays at its size), on both.
    fn remove_last_added(&mut self) {
        if self.joined == 0 {
            return;
        }
        let user = format!("new{}", self.joined);
        let staged = self.committer.stage_remove(ROOM, &[&user]).unwrap();
        let msg = self.incoming(staged);
        self.receiver.borrow_mut().process(&msg).unwrap();
    }
}

fn mls_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("mls_commit");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    for n in SIZES {
        let fx = RefCell::new(Fixture::new(n));
        g.bench_function(BenchmarkId::new("self_update/process", n), |b| {
            b.iter_batched(
                || {
                    let mut fx = fx.borrow_mut();
                    let staged = fx.committer.stage_self_update(ROOM).unwrap();
                    fx.incoming(staged)
                },
                |msg| fx.borrow().receiver.borrow_mut().process(&msg).unwrap(),
                // one commit made, then processed: setup also feeds the receiver (removals)
                BatchSize::PerIteration,
            )
        });
        g.bench_function(BenchmarkId::new("add_one/process", n), |b| {
            b.iter_batched(
                || {
                    let mut fx = fx.borrow_mut();
                    fx.remove_last_added();
                    fx.joined += 1;
                    let user = format!("new{}", fx.joined);
                    let package = newcomer(&mut fx.committer, &user).1;
                    let staged = fx.committer.stage_add(ROOM, &[package]).unwrap();
                    fx.incoming(staged)
                },
                |msg| fx.borrow().receiver.borrow_mut().process(&msg).unwrap(),
                // one commit made, then processed: setup also feeds the receiver (removals)
                BatchSize::PerIteration,
            )
        });
        // last: a staged-and-dropped commit uses up a handshake generation of the epoch, and
        // thousands of them would put later commits beyond what receivers accept
        g.bench_function(BenchmarkId::new("self_update/commit", n), |b| {
            let committer = &mut fx.borrow_mut().committer;
            b.iter(|| {
                committer.stage_self_update(ROOM).unwrap();
                committer.abort_commit(ROOM).unwrap();
            })
        });
        g.bench_function(BenchmarkId::new("add_one/commit", n), |b| {
            b.iter_batched(
                || {
                    let mut fx = fx.borrow_mut();
                    fx.made += 1;
                    let user = format!("x{}", fx.made);
                    newcomer(&mut fx.committer, &user).1
                },
                |package| {
                    let committer = &mut fx.borrow_mut().committer;
                    committer.stage_add(ROOM, &[package]).unwrap();
                    committer.abort_commit(ROOM).unwrap();
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, mls_commit);
criterion_main!(benches);
