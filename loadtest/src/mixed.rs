//! The `mixed` scenario: one run of mostly idle users, a share of them chatting and a share
//! scrolling history. User `u` joins room `u % rooms`; users `0 .. C` are the chatters
//! (publishers on the fan-out's open-model schedule, so loss, duplicates and the `prev`
//! chain are checked for every member exactly as in `fanout`, idle ones included), users
//! `C .. C+S` the scrollers (history readers as in `history`, pages checked the same way,
//! except that chat newer than the fill is expected), the rest idle. Scrollers and idle users
//! are members too: they receive every chat message and are checked for it.

use crate::changes::Mix;
use crate::cli::{Common, MixedArgs};
use crate::history::{self, Expect, ReadPlan, RoomFill};
use crate::plan::{ConnPlan, Plan, PubPlan, RoomPlan};
use crate::setup::Api;
use crate::tracker::AckedSet;

/// Sizes of a mixed run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub users: usize,
    pub chatters: usize,
    pub scrollers: usize,
    /// Total sends per second over the chatters.
    pub rate: f64,
    /// Total page requests per second over the scrollers.
    pub history_rate: f64,
    pub secs: f64,
    pub accounts: usize,
    pub limit: u64,
    pub body_bytes: usize,
    /// Edits and reactions among the chatters' sends.
    pub mix: Mix,
}

impl Shape {
    /// Chatters and scrollers from the fractions: each rounded, at least one when its
    /// fraction and rate are positive, together at most every user.
    pub fn of(a: &MixedArgs, secs: f64, accounts: usize) -> Self {
        let count = |f: f64, rate: f64| {
            let n = (a.users as f64 * f.clamp(0.0, 1.0)).round() as usize;
            if f > 0.0 && rate > 0.0 {
                n.max(1)
            } else {
                n
            }
        };
        let chatters = count(a.chatters_fraction, a.rate).min(a.users);
        let scrollers = count(a.scrollers_fraction, a.history_rate).min(a.users - chatters);
        Self {
            users: a.users,
            chatters,
            scrollers,
            rate: a.rate,
            history_rate: a.history_rate,
            secs,
            accounts,
            limit: a.page,
            body_bytes: a.body_bytes,
            mix: Mix {
                edits: a.edits_fraction.clamp(0.0, 1.0),
                reactions: a
                    .reactions_fraction
                    .clamp(0.0, 1.0 - a.edits_fraction.clamp(0.0, 1.0)),
                searches_per_s: a.search_rate.max(0.0),
            },
        }
    }
}

/// The plan of a mixed run over `names` (filled as `fills` says).
pub fn mixed_plan(names: Vec<String>, fills: &[RoomFill], s: Shape) -> Plan {
    let n_rooms = names.len().max(1);
    let mut members = vec![0u64; names.len()];
    let mut chatters_in = vec![0u64; names.len()];
    for u in 0..s.users {
        members[u % n_rooms] += 1;
        if u < s.chatters {
            chatters_in[u % n_rooms] += 1;
        }
    }
    let per_chatter = if s.rate > 0.0 && s.chatters > 0 {
        (s.secs * s.rate / s.chatters as f64).floor() as u64
    } else {
        0
    };
    let conns = (0..s.users)
        .map(|u| {
            let room = u % n_rooms;
            let publisher = (u < s.chatters && per_chatter > 0).then(|| PubPlan {
                offset_us: u as f64 * 1e6 / s.rate,
                interval_us: s.chatters as f64 * 1e6 / s.rate,
                count: per_chatter,
                // Chatter `j` of its room (u = room + j·rooms) sends k = j, j + C_room, …
                slot: (u / n_rooms) as u64,
                stride: chatters_in[room],
            });
            let scroller = u.checked_sub(s.chatters).filter(|&g| g < s.scrollers);
            let reader = scroller.map(|g| {
                let f = fills.get(room).copied().unwrap_or(RoomFill {
                    filled: 0,
                    newest: 0,
                });
                ReadPlan {
                    schedule: history::schedule(g, s.scrollers, s.history_rate, s.secs),
                    expect: Expect {
                        limit: s.limit,
                        fill: f.filled,
                        newest: f.newest,
                        exact: false,
                    },
                    progress: g == 0,
                }
            });
            ConnPlan {
                account: u % s.accounts.max(1),
                room,
                publisher,
                reader,
            }
        })
        .collect();
    let rooms = names
        .into_iter()
        .enumerate()
        .map(|(r, name)| {
            let messages = per_chatter * chatters_in[r];
            RoomPlan {
                name,
                messages,
                acked: AckedSet::new(messages),
                members: members[r],
                fill: fills.get(r).map_or(0, |f| f.filled),
            }
        })
        .collect();
    Plan {
        rooms,
        conns,
        body_bytes: s.body_bytes.max(32),
        rate: s.rate,
        ramp_rate: 0.0,
        mix: s.mix,
    }
}

/// Setup and plan of the `mixed` scenario: rooms, the fill, the users.
pub async fn setup(
    api: &Api,
    common: &Common,
    accounts: &[(String, String)],
    run_id: &str,
    a: &MixedArgs,
) -> anyhow::Result<Plan> {
    let (names, fills) = history::filled_rooms(
        api,
        common,
        accounts,
        run_id,
        a.rooms,
        a.messages_per_room,
        a.body_bytes,
    )
    .await?;
    let shape = Shape::of(a, common.duration.as_secs_f64(), accounts.len());
    eprintln!(
        "mixed: {} users in {} rooms: {} chatting at {}/s in total, {} scrolling at {} pages/s, {} idle",
        shape.users,
        names.len(),
        shape.chatters,
        shape.rate,
        shape.scrollers,
        shape.history_rate,
        shape.users - shape.chatters - shape.scrollers
    );
    Ok(mixed_plan(names, &fills, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(users: usize, cf: f64, sf: f64) -> MixedArgs {
        MixedArgs {
            users,
            rooms: 3,
            chatters_fraction: cf,
            scrollers_fraction: sf,
            rate: 60.0,
            history_rate: 20.0,
            messages_per_room: 10,
            page: 5,
            body_bytes: 64,
            accounts: 0,
            edits_fraction: 0.0,
            reactions_fraction: 0.0,
            search_rate: 0.0,
        }
    }

    #[test]
    fn roles_come_from_the_fractions() {
        let s = Shape::of(&args(100, 0.1, 0.05), 10.0, 100);
        assert_eq!((s.chatters, s.scrollers), (10, 5));
        // Tiny fractions still give one of each; together never more than every user.
        let s = Shape::of(&args(10, 0.01, 0.01), 10.0, 10);
        assert_eq!((s.chatters, s.scrollers), (1, 1));
        let s = Shape::of(&args(10, 0.8, 0.5), 10.0, 10);
        assert_eq!((s.chatters, s.scrollers), (8, 2));
        let s = Shape::of(&args(10, 0.0, 0.0), 10.0, 10);
        assert_eq!((s.chatters, s.scrollers), (0, 0));
    }

    #[test]
    fn chatters_scrollers_and_idle_users_share_rooms() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let fills = [
            RoomFill {
                filled: 10,
                newest: 40,
            },
            RoomFill {
                filled: 10,
                newest: 41,
            },
            RoomFill {
                filled: 10,
                newest: 42,
            },
        ];
        // 20 users over 3 rooms: 7, 7, 6 members; 4 chatters (rooms 0, 1, 2, 0), 2 scrollers.
        let shape = Shape::of(&args(20, 0.2, 0.1), 2.0, 20);
        let p = mixed_plan(names, &fills, shape);
        assert_eq!(p.conns.len(), 20);
        let members: Vec<u64> = p.rooms.iter().map(|r| r.members).collect();
        assert_eq!(members, vec![7, 7, 6]);
        // 60 sends/s over 4 chatters for 2 s: 30 each; room 0 has two chatters.
        let pubs: Vec<_> = p.conns.iter().filter_map(|c| c.publisher).collect();
        assert_eq!(pubs.len(), 4);
        assert!(pubs.iter().all(|p| p.count == 30));
        assert_eq!(p.rooms[0].messages, 60);
        assert_eq!(p.rooms[2].messages, 30);
        assert_eq!(p.scheduled(), 120);
        // Room 0's chatters are users 0 and 3: k = 0, 2, 4, … and 1, 3, 5, …, every k once.
        let (p0, p3) = (p.conns[0].publisher.unwrap(), p.conns[3].publisher.unwrap());
        let mut ks: Vec<u64> = (0..30).flat_map(|i| [p0.k(i), p3.k(i)]).collect();
        ks.sort_unstable();
        assert_eq!(ks, (0..60).collect::<Vec<_>>());
        // The open-model schedule over all chatters: one send every 1/60 s in turn.
        assert_eq!(p.conns[1].publisher.unwrap().due(0, 0), 16_666);
        assert_eq!(p.conns[1].publisher.unwrap().due(0, 1), 83_333);
        // Users 4 and 5 scroll (rooms 1 and 2), at 20 pages/s together: 20 each in 2 s.
        let readers: Vec<usize> = (0..20).filter(|&u| p.conns[u].reader.is_some()).collect();
        assert_eq!(readers, vec![4, 5]);
        let r5 = p.conns[5].reader.unwrap();
        assert_eq!(r5.schedule.count, 20);
        assert_eq!(r5.schedule.due(0, 1), 150_000);
        assert_eq!(r5.expect.newest, 42);
        assert!(!r5.expect.exact);
        assert!(p.conns[4].reader.unwrap().progress && !r5.progress);
        assert_eq!(p.history_scheduled(), 40);
        // Nobody both chats and scrolls; the rest only listen.
        assert!(p
            .conns
            .iter()
            .all(|c| !(c.publisher.is_some() && c.reader.is_some())));
        let idle = p
            .conns
            .iter()
            .filter(|c| c.publisher.is_none() && c.reader.is_none())
            .count();
        assert_eq!(idle, 14);
    }
}
