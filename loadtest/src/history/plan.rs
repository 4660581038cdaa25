//! The `history` scenario's plan: readers sharing a total page-request rate in an open
//! model, each in one room whose fill it expects.

use crate::plan::{ConnPlan, Expect, Plan, PubPlan, ReadPlan, RoomPlan};
use crate::tracker::AckedSet;

/// A room after the fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomFill {
    pub filled: u64,
    pub newest: u64,
}

/// Schedule of reader `g` of `n` sharing `rate` requests/s for `secs` seconds.
pub fn schedule(g: usize, n: usize, rate: f64, secs: f64) -> PubPlan {
    let n = n.max(1);
    let (offset_us, interval_us, count) = if rate > 0.0 {
        (
            g as f64 * 1e6 / rate,
            n as f64 * 1e6 / rate,
            (secs * rate / n as f64).floor() as u64,
        )
    } else {
        (0.0, 0.0, 0)
    };
    PubPlan {
        offset_us,
        interval_us,
        count,
        slot: 0,
        stride: 1,
    }
}

/// The plan of the `history` scenario: `readers` connections, reader `i` in room
/// `i % rooms` with account `i % accounts`, sharing `rate` page requests/s. Nothing is sent.
pub fn history_plan(
    names: Vec<String>,
    fills: &[RoomFill],
    readers: usize,
    rate: f64,
    secs: f64,
    accounts: usize,
    limit: u64,
) -> Plan {
    let n_rooms = names.len().max(1);
    let mut members = vec![0u64; names.len()];
    let conns = (0..readers)
        .map(|i| {
            let room = i % n_rooms;
            members[room] += 1;
            let f = fills.get(room).copied().unwrap_or(RoomFill {
                filled: 0,
                newest: 0,
            });
            ConnPlan {
                account: i % accounts.max(1),
                room,
                publisher: None,
                reader: Some(ReadPlan {
                    schedule: schedule(i, readers, rate, secs),
                    expect: Expect {
                        limit,
                        fill: f.filled,
                        newest: f.newest,
                        exact: true,
                    },
                    progress: i == 0,
                }),
            }
        })
        .collect();
    let rooms = names
        .into_iter()
        .zip(members)
        .enumerate()
        .map(|(r, (name, members))| RoomPlan {
            name,
            messages: 0,
            acked: AckedSet::new(0),
            members,
            fill: fills.get(r).map_or(0, |f| f.filled),
        })
        .collect();
    Plan {
        rooms,
        conns,
        body_bytes: 32,
        rate: 0.0,
        ramp_rate: 0.0,
        mix: crate::changes::Mix::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_share_the_rate_open_model() {
        let names = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let fills = [
            RoomFill {
                filled: 10,
                newest: 30,
            },
            RoomFill {
                filled: 10,
                newest: 31,
            },
            RoomFill {
                filled: 10,
                newest: 32,
            },
        ];
        let p = history_plan(names, &fills, 4, 200.0, 2.0, 3, 50);
        assert_eq!(p.conns.len(), 4);
        assert_eq!(p.scheduled(), 0);
        // 4 readers share 200 requests/s for 2 s: 100 each, every 20 ms, offset by 5 ms.
        assert_eq!(p.history_scheduled(), 400);
        let r1 = p.conns[1].reader.unwrap();
        assert_eq!(r1.schedule.count, 100);
        assert_eq!(r1.schedule.due(1_000, 0), 6_000);
        assert_eq!(r1.schedule.due(1_000, 2), 46_000);
        assert!(p.conns[0].reader.unwrap().progress && !r1.progress);
        // Reader 3 wraps to room 0 with account 0; room 0 has two readers.
        assert_eq!((p.conns[3].room, p.conns[3].account), (0, 0));
        assert_eq!(p.rooms[0].members, 2);
        assert_eq!(p.conns[2].reader.unwrap().expect.newest, 32);
        assert!(p.conns.iter().all(|c| c.publisher.is_none()));
    }
}
