//! The shape of a run, fixed before anything connects: which account each connection uses,
//! which room it joins, and for publishers the open-model schedule (send `i` of publisher
//! `g` is due at `t0 + g/R + i·P/R`, whatever happened to earlier sends).

use crate::changes::Mix;
use crate::tracker::AckedSet;

/// One room of the run.
#[derive(Debug)]
pub struct RoomPlan {
    pub name: String,
    /// Sends scheduled into this room (its `k`s are `0..messages`).
    pub messages: u64,
    pub acked: AckedSet,
    /// Connections joined to it.
    pub members: u64,
    /// Fill messages (`h0` … `h<fill-1>`) it held before the run (`history`, `mixed`).
    pub fill: u64,
}

/// A publisher's schedule.
#[derive(Debug, Clone, Copy)]
pub struct PubPlan {
    /// Offset of its first send from `t0`, µs.
    pub offset_us: f64,
    /// Time between its sends, µs.
    pub interval_us: f64,
    pub count: u64,
    /// Its `k`s are `slot + i·stride`.
    pub slot: u64,
    pub stride: u64,
}

impl PubPlan {
    /// Scheduled unix µs of send `i`.
    pub fn due(&self, t0: u64, i: u64) -> u64 {
        t0 + (self.offset_us + i as f64 * self.interval_us) as u64
    }

    pub fn k(&self, i: u64) -> u64 {
        self.slot + i * self.stride
    }

    /// The `i` of `k`, if it is one of this publisher's.
    pub fn index_of(&self, k: u64) -> Option<u64> {
        (k >= self.slot && (k - self.slot).is_multiple_of(self.stride))
            .then(|| (k - self.slot) / self.stride)
    }
}

/// One client connection of the run.
#[derive(Debug, Clone)]
pub struct ConnPlan {
    pub account: usize,
    pub room: usize,
    pub publisher: Option<PubPlan>,
    /// A history reader's schedule and checks (`history`, `mixed`).
    pub reader: Option<ReadPlan>,
}

/// Every connection and room of a run.
#[derive(Debug)]
pub struct Plan {
    pub rooms: Vec<RoomPlan>,
    pub conns: Vec<ConnPlan>,
    pub body_bytes: usize,
    /// Total sends per second.
    pub rate: f64,
    /// New connections per second while connecting (0 = as fast as handshakes go).
    pub ramp_rate: f64,
    /// Edits and reactions among the sends (`mixed`; none elsewhere).
    pub mix: Mix,
}

impl Plan {
    /// `rooms` rooms of `members` connections, `ppr` publishers each (the first members),
    /// `rate` sends/s in total for `secs` seconds. Connection `c` uses account `c % accounts`.
    pub fn fanout(
        room_names: Vec<String>,
        members: usize,
        ppr: usize,
        rate: f64,
        secs: f64,
        accounts: usize,
        body_bytes: usize,
    ) -> Self {
        let ppr = ppr.clamp(usize::from(rate > 0.0), members.max(1));
        let publishers = (room_names.len() * ppr).max(1);
        let per_pub = if rate > 0.0 {
            (secs * rate / publishers as f64).floor() as u64
        } else {
            0
        };
        let mut rooms = Vec::new();
        let mut conns = Vec::new();
        for (r, name) in room_names.into_iter().enumerate() {
            for m in 0..members {
                let publisher = (m < ppr && per_pub > 0).then(|| {
                    let g = (r * ppr + m) as f64;
                    PubPlan {
                        offset_us: g * 1e6 / rate,
                        interval_us: publishers as f64 * 1e6 / rate,
                        count: per_pub,
                        slot: m as u64,
                        stride: ppr as u64,
                    }
                });
                let c = conns.len();
                conns.push(ConnPlan {
                    account: c % accounts.max(1),
                    room: r,
                    publisher,
                    reader: None,
                });
            }
            let messages = per_pub * ppr as u64;
            rooms.push(RoomPlan {
                name,
                messages,
                acked: AckedSet::new(messages),
                members: members as u64,
                fill: 0,
            });
        }
        Self {
            rooms,
            conns,
            body_bytes: body_bytes.max(32),
            rate,
            ramp_rate: 0.0,
            mix: Mix::default(),
        }
    }

    /// Sends scheduled in the whole run.
    pub fn scheduled(&self) -> u64 {
        self.rooms.iter().map(|r| r.messages).sum()
    }

    /// `history` page requests scheduled in the whole run (readers of rooms with members:
    /// a generator that does not drive a room has its members set to 0).
    pub fn history_scheduled(&self) -> u64 {
        self.conns
            .iter()
            .filter(|c| self.rooms[c.room].members > 0)
            .filter_map(|c| c.reader.as_ref())
            .map(|r| r.schedule.count)
            .sum()
    }

    /// Deliveries expected for the sends acked so far (every member of the room, once).
    pub fn expected_deliveries(&self) -> u64 {
        self.rooms.iter().map(|r| r.acked.count() * r.members).sum()
    }
}

/// What a reader knows about its room before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// Page size asked for (`limit`).
    pub limit: u64,
    /// Fill messages in the room (`h0` … `h<fill-1>`, oldest first).
    pub fill: u64,
    /// Seq of the newest fill message (0 for an empty room).
    pub newest: u64,
    /// Nothing but the fill is ever sent to the room (`history`): every walk must start at
    /// `newest` and read exactly `fill` messages. Otherwise (`mixed`) newer messages may
    /// come after the fill.
    pub exact: bool,
}

/// One history reader of a run.
#[derive(Debug, Clone, Copy)]
pub struct ReadPlan {
    /// When its page requests are due (`slot`/`stride` unused).
    pub schedule: PubPlan,
    pub expect: Expect,
    /// This reader prints the run's `[history]` progress line.
    pub progress: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spreads_sends_evenly() {
        let names = vec!["a".to_owned(), "b".to_owned()];
        let p = Plan::fanout(names, 3, 2, 100.0, 2.0, 10, 64);
        assert_eq!(p.conns.len(), 6);
        assert_eq!(p.scheduled(), 200);
        let pubs: Vec<_> = p.conns.iter().filter_map(|c| c.publisher).collect();
        assert_eq!(pubs.len(), 4);
        // 4 publishers at 100/s in total: each every 40 ms, offset by 10 ms.
        assert_eq!(pubs[1].due(0, 0), 10_000);
        assert_eq!(pubs[1].due(0, 1), 50_000);
        assert_eq!(pubs[1].k(3), 7);
        assert_eq!(pubs[1].index_of(7), Some(3));
        assert_eq!(pubs[1].index_of(6), None);
    }
}
