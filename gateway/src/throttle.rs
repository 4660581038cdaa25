//! Abuse throttles of the HTTP API: login attempts, registrations and room creation.
//!
//! Logins pass three checks before a password is hashed:
//! - a token bucket per client IP (`login_per_ip_per_minute`, `login_ip_burst`);
//! - a lockout per (IP, account): after `login_free_failures` wrong passwords the pair waits
//!   `login_lockout_base_secs`, doubling with each further failure up to
//!   `login_lockout_max_secs`; a success clears it. It stops one source guessing one
//!   account without touching anyone else: the account's owner on another IP is unaffected;
//! - a looser bucket of wrong passwords per account from all IPs together
//!   (`login_account_failures_per_minute`, `login_account_burst`), so a botnet of many IPs
//!   still guesses no faster than that. The tradeoff: while such a distributed flood keeps the
//!   bucket empty, logins of that account answer 429 for everyone, its owner included. It lasts
//!   only as long as the flood (nothing grows or is stored, sessions and tokens are kept) and
//!   touches no other account. We chose bounded guessing over availability of one attacked
//!   account's login.
//!
//! A login that brings back a valid device token of its account (a known device, see
//! `auth::Tokens::issue_device`) passes its IP's bucket and the device's own lockout
//! (`login_free_failures`, then the same doubling windows) instead of the (IP, account)
//! lockout and the account's bucket, so a flood of guesses from elsewhere, which keeps those
//! spent, does not hold the account's owner out (OWASP's device cookies).
//!
//! Registrations have a bucket per IP; room creation, searches, KeyPackage claims and the
//! audit records of refused admin calls one per user. Every table is a bounded
//! moka cache (`throttle_max_entries`, least used evicted, idle entries expire), so an
//! attacker with many IPs or names cannot grow memory; eviction forgets a key, which errs on
//! the side of letting it through. Times use tokio's clock so tests can pause it.
//!
//! Per-IP limits (these and the connection caps) count an IPv6 client by its /64 network
//! ([`client_key`]): one host usually holds a whole /64, and counting each address would
//! give it as many buckets as it likes addresses.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_coherent::Buckets;
use chatmesh_protocol::{ApiError, ErrorCode};
use moka::future::Cache;
use tokio::time::Instant;

use crate::config::GatewayConfig;

/// The key a client address is counted under by per-IP limits: an IPv4 address itself, an
/// IPv6 address its /64 network (an IPv4-mapped IPv6 address as the IPv4 address).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        v4 => v4,
    }
}

/// A refused request: what refused it and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("throttled ({what}); retry in {retry_after:?}")]
pub struct Throttled {
    /// The metric label: `login_ip`, `login_lockout`, `login_account`, `register_ip`,
    /// `room_create`.
    pub what: &'static str,
    pub retry_after: Duration,
}

impl Throttled {
    fn new(what: &'static str, retry_after: Duration) -> Self {
        metrics::counter!("chatmesh_throttled_total", "what" => what).increment(1);
        Self { what, retry_after }
    }
}

#[derive(Debug, Default)]
struct Lockout {
    failures: u32,
    until: Option<Instant>,
    /// Attempts whose password is being checked now ([`Attempt`]).
    pending: u32,
}

/// A login attempt of an (IP, account) pair in flight: counted toward the pair's free
/// failures until dropped, so attempts sent all at once cannot pass the lockout check
/// before the first failure is counted. Hold it until the result is recorded.
#[derive(Debug)]
#[must_use = "hold it until the attempt's result is recorded"]
pub struct Attempt(Arc<Mutex<Lockout>>);

impl Drop for Attempt {
    fn drop(&mut self) {
        let mut l = self.0.lock().unwrap_or_else(|e| e.into_inner());
        l.pending = l.pending.saturating_sub(1);
    }
}

/// How long an attempt refused for others in flight waits: about one password check.
const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

/// `what` (`login_lockout`, `login_device_lockout`) while `l` is locked out.
fn locked_out(l: &Lockout, what: &'static str) -> Result<(), Throttled> {
    let wait = l
        .until
        .and_then(|u| u.checked_duration_since(Instant::now()));
    match wait.filter(|w| !w.is_zero()) {
        Some(wait) => Err(Throttled::new(what, wait)),
        None => Ok(()),
    }
}

/// A known device's lockout key: (device id, account).
type DeviceKey = (Arc<str>, Arc<str>);

/// The throttles of one gateway.
#[derive(Debug)]
pub struct Throttle {
    login_ip: Buckets<IpAddr>,
    login_account: Buckets<Arc<str>>,
    register_ip: Buckets<IpAddr>,
    rooms: Buckets<Arc<str>>,
    dms: Buckets<Arc<str>>,
    /// Authenticated API calls per user.
    api: Buckets<Arc<str>>,
    searches: Buckets<Arc<str>>,
    /// Searches running now, per user: one at a time ([`Throttle::search_running`]).
    searching: crate::counts::Counts<Arc<str>>,
    /// Checks of late resends per user.
    resends: Buckets<Arc<str>>,
    /// Commits, proposals and welcomes per user (a worker checks each).
    handshakes: Buckets<Arc<str>>,
    claims: Buckets<Arc<str>>,
    /// Claims per (caller, user whose packages are claimed).
    claims_of: Buckets<(Arc<str>, Arc<str>)>,
    refusals: Buckets<Arc<str>>,
    refusals_here: Buckets<()>,
    lockouts: Cache<(IpAddr, Arc<str>), Arc<Mutex<Lockout>>>,
    /// Lockouts of known devices, per (device id, account) (only valid device tokens make
    /// entries: their ids cannot be made up).
    device_lockouts: Cache<DeviceKey, Arc<Mutex<Lockout>>>,
    free_failures: u32,
    lockout_base: Duration,
    lockout_max: Duration,
}

const MINUTE: Duration = Duration::from_secs(60);
/// Refused admin calls of one user written to the audit log per minute (and in a burst).
pub const AUDITED_REFUSALS_PER_MINUTE: u32 = 10;
/// Refused admin calls of all users together that one gateway writes to the audit log per
/// minute (and in a burst): many accounts' refusals cannot grow the log faster either.
pub const AUDITED_REFUSALS_PER_GATEWAY_PER_MINUTE: u32 = 60;
const HOUR: Duration = Duration::from_secs(3600);

impl Throttle {
    pub fn new(cfg: &GatewayConfig) -> Self {
        let n = cfg.throttle_max_entries;
        let lockout_max = Duration::from_secs(cfg.login_lockout_max_secs);
        Self {
            login_ip: Buckets::new(MINUTE, cfg.login_per_ip_per_minute, cfg.login_ip_burst, n),
            login_account: Buckets::new(
                MINUTE,
                cfg.login_account_failures_per_minute,
                cfg.login_account_burst,
                n,
            ),
            register_ip: Buckets::new(HOUR, cfg.register_per_ip_per_hour, cfg.register_ip_burst, n),
            rooms: Buckets::new(MINUTE, cfg.rooms_per_minute, cfg.rooms_burst, n),
            dms: Buckets::new(MINUTE, cfg.dms_per_minute, cfg.dm_burst, n),
            api: Buckets::new(MINUTE, cfg.api_per_user_per_minute, cfg.api_user_burst, n),
            searches: Buckets::new(MINUTE, cfg.searches_per_minute, cfg.search_burst, n),
            searching: crate::counts::Counts::default(),
            resends: Buckets::new(
                MINUTE,
                cfg.resend_checks_per_minute,
                cfg.resend_check_burst,
                n,
            ),
            handshakes: Buckets::new(MINUTE, cfg.mls_checks_per_minute, cfg.mls_check_burst, n),
            claims: Buckets::new(MINUTE, cfg.key_claims_per_minute, cfg.key_claim_burst, n),
            claims_of: Buckets::new(
                HOUR,
                cfg.key_claims_per_target_per_hour,
                cfg.key_claims_per_target_per_hour,
                n,
            ),
            refusals: Buckets::new(
                MINUTE,
                AUDITED_REFUSALS_PER_MINUTE,
                AUDITED_REFUSALS_PER_MINUTE,
                n,
            ),
            refusals_here: Buckets::new(
                MINUTE,
                AUDITED_REFUSALS_PER_GATEWAY_PER_MINUTE,
                AUDITED_REFUSALS_PER_GATEWAY_PER_MINUTE,
                1,
            ),
            lockouts: Cache::builder()
                .max_capacity(n)
                .time_to_idle(lockout_max.max(MINUTE) * 2)
                .build(),
            device_lockouts: Cache::builder()
                .max_capacity(n)
                .time_to_idle(lockout_max.max(MINUTE) * 2)
                .build(),
            free_failures: cfg.login_free_failures.max(1),
            lockout_base: Duration::from_secs(cfg.login_lockout_base_secs.max(1)),
            lockout_max,
        }
    }

    /// May `ip` try a password for `user` now? Counts the attempt against the IP and takes
    /// one from the account's bucket up front (so concurrent guesses cannot all slip in
    /// before the first failure is known); a success or an unanswered attempt gives it back
    /// ([`Throttle::login_succeeded`], [`Throttle::login_unanswered`]).
    pub async fn login_allowed(&self, ip: IpAddr, user: &str) -> Result<Attempt, Throttled> {
        let ip = client_key(ip);
        let key = (ip, Arc::<str>::from(user));
        if let Some(lock) = self.lockouts.get(&key).await {
            let l = lock.lock().unwrap_or_else(|e| e.into_inner());
            locked_out(&l, "login_lockout")?;
        }
        self.login_ip
            .check(ip, true)
            .await
            .map_err(|wait| Throttled::new("login_ip", wait))?;
        self.login_account
            .check(key.1.clone(), true)
            .await
            .map_err(|wait| Throttled::new("login_account", wait))?;
        // Past the buckets only: a refused request leaves no entry behind.
        let lock = self
            .lockouts
            .get_with(key.clone(), async { Arc::default() })
            .await;
        if let Err(refused) = self.enter(&lock, "login_lockout") {
            // Not attempted: the tokens go back.
            self.login_ip.refund(&ip).await;
            self.login_account.refund(&key.1).await;
            return Err(refused);
        }
        Ok(Attempt(lock))
    }

    /// Lets an attempt in under the lockout `lock` (refused as `what` while it is locked
    /// out): failures and attempts still being checked together stay within the free
    /// failures (past them, one attempt at a time: the next waits for an answer).
    fn enter(&self, lock: &Arc<Mutex<Lockout>>, what: &'static str) -> Result<(), Throttled> {
        let mut l = lock.lock().unwrap_or_else(|e| e.into_inner());
        let in_flight = l.pending > 0 && l.failures.saturating_add(l.pending) >= self.free_failures;
        locked_out(&l, what)?;
        if in_flight {
            return Err(Throttled::new("login_in_flight", IN_FLIGHT_RETRY));
        }
        l.pending += 1;
        Ok(())
    }

    /// Counts a wrong password toward the lockout `lock`.
    fn fail(&self, lock: &Mutex<Lockout>) {
        let mut l = lock.lock().unwrap_or_else(|e| e.into_inner());
        l.failures = l.failures.saturating_add(1);
        if l.failures >= self.free_failures {
            let doublings = (l.failures - self.free_failures).min(20);
            let window = self.lockout_base.saturating_mul(1 << doublings);
            l.until = Some(Instant::now() + window.min(self.lockout_max));
        }
    }

    /// A wrong password from `ip` for `user`: counts toward the pair's lockout (the account's
    /// bucket keeps the token [`Throttle::login_allowed`] took).
    pub async fn login_failed(&self, ip: IpAddr, user: &str) {
        let ip = client_key(ip);
        let user = Arc::<str>::from(user);
        let lock = self
            .lockouts
            .get_with((ip, user), async { Arc::default() })
            .await;
        self.fail(&lock);
    }

    /// May a known device (a valid device token of `user`, with id `device`) at `ip` try a
    /// password for `user` now? The IP's bucket and the device's own lockout apply; the
    /// (IP, account) lockout and the account's bucket, which guessing from elsewhere
    /// spends, do not hold the account's owner out.
    pub async fn device_login_allowed(
        &self,
        ip: IpAddr,
        device: &str,
        user: &str,
    ) -> Result<Attempt, Throttled> {
        let ip = client_key(ip);
        self.login_ip
            .check(ip, true)
            .await
            .map_err(|wait| Throttled::new("login_ip", wait))?;
        let key = (Arc::<str>::from(device), Arc::<str>::from(user));
        let lock = self
            .device_lockouts
            .get_with(key, async { Arc::default() })
            .await;
        if let Err(refused) = self.enter(&lock, "login_device_lockout") {
            self.login_ip.refund(&ip).await;
            return Err(refused);
        }
        Ok(Attempt(lock))
    }

    /// A wrong password from a known device: counts toward its own lockout.
    pub async fn device_login_failed(&self, device: &str, user: &str) {
        let key = (Arc::<str>::from(device), Arc::<str>::from(user));
        let lock = self
            .device_lockouts
            .get_with(key, async { Arc::default() })
            .await;
        self.fail(&lock);
    }

    /// A right password from a known device: its lockout starts afresh.
    pub async fn device_login_succeeded(&self, device: &str, user: &str) {
        let key = (Arc::<str>::from(device), Arc::<str>::from(user));
        self.device_lockouts.invalidate(&key).await;
    }

    /// A right password from `ip` for `user`: the pair starts afresh and the account's
    /// token is given back.
    pub async fn login_succeeded(&self, ip: IpAddr, user: &str) {
        let ip = client_key(ip);
        let user = Arc::<str>::from(user);
        self.login_account.refund(&user).await;
        self.lockouts.invalidate(&(ip, user)).await;
    }

    /// A login that got no verdict (no worker answered, or its hashing queue was full): the
    /// account's token is given back.
    pub async fn login_unanswered(&self, user: &str) {
        self.login_account.refund(&Arc::from(user)).await;
    }

    /// May `ip` register an account now? Counts it.
    pub async fn register_allowed(&self, ip: IpAddr) -> Result<(), Throttled> {
        self.register_ip
            .check(client_key(ip), true)
            .await
            .map_err(|wait| Throttled::new("register_ip", wait))
    }

    /// Should `user`'s refused admin call be written to the audit log? At most
    /// [`AUDITED_REFUSALS_PER_MINUTE`] a minute per user and
    /// [`AUDITED_REFUSALS_PER_GATEWAY_PER_MINUTE`] for all users on this gateway: a loop of
    /// refused calls, of one account or of many, must not grow the log (kept a year) without
    /// end nor bury the real entries.
    pub async fn refusal_audited(&self, user: &str) -> bool {
        self.refusals.check(Arc::from(user), true).await.is_ok()
            && self.refusals_here.check((), true).await.is_ok()
    }

    /// May `user` make an authenticated API call now? Counts it.
    pub async fn api_allowed(&self, user: &str) -> Result<(), Throttled> {
        self.api
            .check(Arc::from(user), true)
            .await
            .map_err(|wait| Throttled::new("api", wait))
    }

    /// [`Throttle::api_allowed`], answered as the protocol error a client gets when its
    /// request budget is spent.
    pub async fn charge_api(&self, user: &str) -> Result<(), ApiError> {
        let Err(refused) = self.api_allowed(user).await else {
            return Ok(());
        };
        let wait = refused.retry_after.as_millis().max(1);
        Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("over your request rate: retry in {wait} ms"),
        ))
    }

    /// May `user` have a late resend checked now (`send` with `resend_after`)? Counts it.
    pub async fn resend_check_allowed(&self, user: &str) -> Result<(), Throttled> {
        self.resends
            .check(Arc::from(user), true)
            .await
            .map_err(|wait| Throttled::new("resend_check", wait))
    }

    /// May `user` send an e2ee room's commit, proposal or welcome now? Counts it.
    pub async fn mls_check_allowed(&self, user: &str) -> Result<(), Throttled> {
        self.handshakes
            .check(Arc::from(user), true)
            .await
            .map_err(|wait| Throttled::new("mls_check", wait))
    }

    /// May `user` search now? Counts it.
    pub async fn search_allowed(&self, user: &str) -> Result<(), Throttled> {
        self.searches
            .check(Arc::from(user), true)
            .await
            .map_err(|wait| Throttled::new("search", wait))
    }

    /// `user`'s search, running while the answer is held: one at a time per user on this
    /// gateway. A worker runs few searches at once (docs/PROTOCOL.md, Search), and one
    /// user's costly queries sent together held them all, so that everyone else's search on
    /// that worker was refused for as long as the user kept sending.
    pub fn search_running(
        &self,
        user: &str,
    ) -> Result<crate::counts::Counted<Arc<str>>, Throttled> {
        self.searching
            .take(&Arc::from(user), 1)
            .ok_or_else(|| Throttled::new("search_running", Duration::from_secs(1)))
    }

    /// May `user` claim `target`'s KeyPackages now? Counts it, per caller and per (caller,
    /// target).
    pub async fn claim_allowed(&self, user: &str, target: &str) -> Result<(), Throttled> {
        let user: Arc<str> = Arc::from(user);
        self.claims_of
            .check((user.clone(), Arc::from(target)), true)
            .await
            .map_err(|wait| Throttled::new("key_claim_target", wait))?;
        self.claims
            .check(user, true)
            .await
            .map_err(|wait| Throttled::new("key_claim", wait))
    }

    /// May `user` open a DM now? Counts it.
    pub async fn dm_allowed(&self, user: &str) -> Result<(), Throttled> {
        self.dms
            .check(Arc::from(user), true)
            .await
            .map_err(|wait| Throttled::new("dm", wait))
    }

    /// May `user` create a room now? Counts it.
    pub async fn room_allowed(&self, user: &str) -> Result<(), Throttled> {
        self.rooms
            .check(Arc::from(user), true)
            .await
            .map_err(|wait| Throttled::new("room_create", wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn throttle() -> Throttle {
        Throttle::new(&GatewayConfig {
            login_free_failures: 3,
            login_lockout_base_secs: 2,
            login_lockout_max_secs: 10,
            login_account_burst: 5,
            login_account_failures_per_minute: 6,
            ..GatewayConfig::default()
        })
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    /// Refusals are audited up to ten a minute per user and sixty a minute in all: seven
    /// users with ten each get sixty written, whoever comes last is not; a minute later the
    /// gateway writes again.
    #[tokio::test(start_paused = true)]
    async fn audited_refusals_are_bounded_per_user_and_per_gateway() {
        let t = throttle();
        let mut audited = Vec::new();
        for user in ["u1", "u2", "u3", "u4", "u5", "u6", "u7"] {
            let mut n = 0;
            for _ in 0..12 {
                n += usize::from(t.refusal_audited(user).await);
            }
            audited.push(n);
        }
        assert_eq!(audited, [10, 10, 10, 10, 10, 10, 0]);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(t.refusal_audited("u7").await, "half a minute refills both");
    }

    /// After the free failures a pair is locked for a window that doubles per failure and
    /// is capped; other accounts of that IP and the account on other IPs are not locked.
    #[tokio::test(start_paused = true)]
    async fn lockout_grows_per_pair_and_stays_there() {
        let t = throttle();
        for _ in 0..2 {
            let _ = t.login_allowed(A, "ann").await.unwrap();
            t.login_failed(A, "ann").await;
        }
        let _ = t.login_allowed(A, "ann").await.unwrap();
        t.login_failed(A, "ann").await;
        let e = t.login_allowed(A, "ann").await.unwrap_err();
        assert_eq!(
            (e.what, e.retry_after),
            ("login_lockout", Duration::from_secs(2))
        );
        assert!(t.login_allowed(A, "bob").await.is_ok(), "other account");
        assert!(t.login_allowed(B, "ann").await.is_ok(), "other IP");
        tokio::time::advance(Duration::from_secs(2)).await;
        let _ = t.login_allowed(A, "ann").await.unwrap();
        t.login_failed(A, "ann").await;
        let e = t.login_allowed(A, "ann").await.unwrap_err();
        assert_eq!(e.retry_after, Duration::from_secs(4), "doubled");
        for _ in 0..5 {
            t.login_failed(A, "ann").await;
        }
        let e = t.login_allowed(A, "ann").await.unwrap_err();
        assert_eq!(e.retry_after, Duration::from_secs(10), "capped");
        // Five attempts (four from A, one from B) took the account's five tokens.
        let e = t.login_allowed(B, "ann").await.unwrap_err();
        assert_eq!(e.what, "login_account", "the account bucket is empty now");
        tokio::time::advance(Duration::from_secs(10)).await;
        t.login_succeeded(A, "ann").await;
        assert!(
            t.login_allowed(A, "ann").await.is_ok(),
            "refilled and cleared"
        );
    }

    /// Attempts sent all at once count toward the free failures while they are checked: with
    /// three free, a fourth at the same time waits (it would pass the lockout check before
    /// the first failure is counted); one answered makes room; past the free failures, one
    /// at a time after the lockout.
    #[tokio::test(start_paused = true)]
    async fn attempts_in_flight_count_toward_the_free_failures() {
        let t = throttle();
        let held: Vec<Attempt> =
            futures::future::join_all((0..3).map(|_| t.login_allowed(A, "ann")))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        let e = t.login_allowed(A, "ann").await.unwrap_err();
        assert_eq!(e.what, "login_in_flight");
        assert!(t.login_allowed(B, "ann").await.is_ok(), "another IP");
        t.login_unanswered("ann").await;
        for attempt in held {
            t.login_failed(A, "ann").await;
            drop(attempt);
        }
        let e = t.login_allowed(A, "ann").await.unwrap_err();
        assert_eq!(e.what, "login_lockout");
        tokio::time::advance(Duration::from_secs(2)).await;
        let one = t.login_allowed(A, "ann").await.unwrap();
        let e = t.login_allowed(A, "ann").await.unwrap_err();
        assert_eq!(
            e.what, "login_in_flight",
            "one at a time past the free failures"
        );
        drop(one);
        assert!(t.login_allowed(A, "ann").await.is_ok());
    }

    /// Successes and unanswered attempts give the account's token back.
    #[tokio::test(start_paused = true)]
    async fn only_failures_spend_the_account_bucket() {
        let t = throttle();
        for i in 0..20u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 2, 0, i));
            let _ = t.login_allowed(ip, "ann").await.unwrap();
            if i % 2 == 0 {
                t.login_succeeded(ip, "ann").await;
            } else {
                t.login_unanswered("ann").await;
            }
        }
        for _ in 0..5 {
            let _ = t.login_allowed(B, "ann").await.unwrap();
        }
        assert!(
            t.login_allowed(B, "ann").await.is_err(),
            "burst of 5 in flight"
        );
    }

    /// The account-wide bucket stops guessing from many IPs; only that account.
    #[tokio::test(start_paused = true)]
    async fn account_bucket_spans_ips() {
        let t = throttle();
        for i in 0..5u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 1, 0, i));
            let _ = t.login_allowed(ip, "ann").await.unwrap();
            t.login_failed(ip, "ann").await;
        }
        let e = t.login_allowed(B, "ann").await.unwrap_err();
        assert_eq!(e.what, "login_account");
        assert_eq!(
            e.retry_after,
            Duration::from_secs(10),
            "one token at 6 per minute"
        );
        assert!(t.login_allowed(B, "bob").await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn registrations_and_rooms_have_buckets() {
        let t = Throttle::new(&GatewayConfig {
            register_ip_burst: 2,
            rooms_burst: 1,
            ..GatewayConfig::default()
        });
        t.register_allowed(A).await.unwrap();
        t.register_allowed(A).await.unwrap();
        assert_eq!(
            t.register_allowed(A).await.unwrap_err().retry_after,
            Duration::from_secs(180),
            "20 per hour"
        );
        assert!(t.register_allowed(B).await.is_ok());
        t.room_allowed("ann").await.unwrap();
        assert!(t.room_allowed("ann").await.is_err());
        assert!(t.room_allowed("bob").await.is_ok());
    }

    /// A caller's claims are bounded per user whose packages it claims (a refused claim of
    /// one user does not count against the caller) and over all users; another caller has
    /// its own.
    #[tokio::test(start_paused = true)]
    async fn claims_are_throttled_per_caller_and_per_user_claimed() {
        let t = Throttle::new(&GatewayConfig {
            key_claim_burst: 5,
            key_claims_per_target_per_hour: 2,
            ..GatewayConfig::default()
        });
        t.claim_allowed("bob", "ann").await.unwrap();
        t.claim_allowed("bob", "ann").await.unwrap();
        let e = t.claim_allowed("bob", "ann").await.unwrap_err();
        assert_eq!(e.retry_after, Duration::from_secs(1800), "2 per hour");
        for user in ["cy", "dan", "eve"] {
            t.claim_allowed("bob", user).await.unwrap();
        }
        assert!(
            t.claim_allowed("bob", "fay").await.is_err(),
            "the caller's burst of 5"
        );
        assert!(t.claim_allowed("carl", "ann").await.is_ok());
    }

    /// One search at a time per user: a second while the first runs is refused (a 429 a
    /// second later), another user's goes on, and the user's next one once the first ended.
    #[test]
    fn one_search_runs_at_a_time_per_user() {
        let t = throttle();
        let first = t.search_running("ann").expect("the first");
        let second = t.search_running("ann").expect_err("while the first runs");
        assert_eq!(
            (second.what, second.retry_after),
            ("search_running", Duration::from_secs(1))
        );
        let _bob = t.search_running("bob").expect("another user's");
        drop(first);
        assert!(t.search_running("ann").is_ok(), "once the first ended");
    }
}
