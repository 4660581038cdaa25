//! The APNs provider token: an ES256 JWT signed with the team's `.p8` key (header `kid` =
//! the key's id, claims `iss` = the team id and `iat`). Apple refuses a token older than an
//! hour and one renewed more often than every 20 minutes, so one token serves every push
//! for [`REFRESH_AFTER`]; a push answered `ExpiredProviderToken` or `InvalidProviderToken`
//! drops it early if it is at least [`MIN_RENEWAL`] old ([`ProviderToken::refused`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// A token is signed anew this long after it was made (Apple: between 20 and 60 minutes).
pub const REFRESH_AFTER: Duration = Duration::from_secs(50 * 60);
/// A refused token younger than this is kept: Apple refuses provider token updates more
/// often than every 20 minutes (`TooManyProviderTokenUpdates`) for every push of the team,
/// and a refusal may come from one target's own doing (a topic of another team).
pub const MIN_RENEWAL: Duration = Duration::from_secs(20 * 60);

/// The claims Apple reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub iat: u64,
}

/// Signs provider tokens and keeps the current one.
pub struct ProviderToken {
    key: EncodingKey,
    key_id: String,
    team_id: String,
    current: Mutex<Option<(Arc<str>, Instant)>>,
}

impl std::fmt::Debug for ProviderToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderToken")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .finish_non_exhaustive()
    }
}

impl ProviderToken {
    /// `pem` is the `.p8` file (PKCS#8, P-256). The key is tried once here, so that a bad
    /// key stops the start rather than every push.
    pub fn new(
        pem: &[u8],
        key_id: &str,
        team_id: &str,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let me = Self {
            key: EncodingKey::from_ec_pem(pem)?,
            key_id: key_id.to_owned(),
            team_id: team_id.to_owned(),
            current: Mutex::new(None),
        };
        me.sign()?;
        Ok(me)
    }

    /// The current token, signed anew when there is none or it is [`REFRESH_AFTER`] old.
    pub fn get(&self) -> Result<Arc<str>, jsonwebtoken::errors::Error> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, made)) = &*current {
            if made.elapsed() < REFRESH_AFTER {
                return Ok(token.clone());
            }
        }
        let token: Arc<str> = self.sign()?.into();
        *current = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    /// APNs refused `token`: the next [`get`](Self::get) signs a new one, unless another
    /// push already replaced it (many pushes refused at once make one new token) or it is
    /// younger than [`MIN_RENEWAL`] (it is kept: renewing it sooner is refused for everyone).
    pub fn refused(&self, token: &Arc<str>) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current
            .as_ref()
            .is_some_and(|(t, made)| Arc::ptr_eq(t, token) && made.elapsed() >= MIN_RENEWAL)
        {
            *current = None;
        }
    }

    fn sign(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: self.team_id.clone(),
            iat: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    /// A P-256 key made for these tests only (`openssl genpkey -algorithm EC`).
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSHz9kSTYr8mvZH2G
wagfBJ3lk8g/8L5yy7AayjXk/32hRANCAASfu0kLFk3FY1hm2YEu3yKRAvaCIFBW
nA6JHUaMRshpHGTXlrP/BGkMOSHInSVHeLJMV27eb01pMrXaDRYid6GJ
-----END PRIVATE KEY-----
";
    const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEn7tJCxZNxWNYZtmBLt8ikQL2giBQ
VpwOiR1GjEbIaRxk15az/wRpDDkhyJ0lR3iyTFdu3m9NaTK12g0WInehiQ==
-----END PUBLIC KEY-----
";

    fn verify(token: &str) -> (jsonwebtoken::Header, Claims) {
        let mut v = Validation::new(Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let key = DecodingKey::from_ec_pem(PUBLIC.as_bytes()).unwrap();
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).unwrap();
        (data.header, data.claims)
    }

    #[tokio::test(start_paused = true)]
    async fn one_token_serves_until_refresh_or_refusal() {
        let tokens = ProviderToken::new(KEY.as_bytes(), "ABC123DEFG", "TEAM123456").unwrap();
        let first = tokens.get().unwrap();
        let (header, claims) = verify(&first);
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some("ABC123DEFG"));
        assert_eq!(claims.iss, "TEAM123456");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(now.as_secs().abs_diff(claims.iat) <= 1, "iat is now");

        tokio::time::advance(REFRESH_AFTER - Duration::from_secs(1)).await;
        assert_eq!(tokens.get().unwrap(), first, "reused within the hour");
        tokio::time::advance(Duration::from_secs(1)).await;
        let second = tokens.get().unwrap();
        assert!(Arc::ptr_eq(&second, &tokens.get().unwrap()));
        assert!(!Arc::ptr_eq(&second, &first), "signed anew after 50 min");

        tokens.refused(&first);
        assert!(
            Arc::ptr_eq(&second, &tokens.get().unwrap()),
            "a stale refusal"
        );
        tokens.refused(&second);
        assert!(
            Arc::ptr_eq(&second, &tokens.get().unwrap()),
            "kept: younger than 20 minutes"
        );
        tokio::time::advance(MIN_RENEWAL).await;
        tokens.refused(&second);
        assert!(!Arc::ptr_eq(&second, &tokens.get().unwrap()), "dropped");
    }

    #[test]
    fn a_key_that_is_not_p256_pkcs8_is_refused() {
        assert!(ProviderToken::new(b"not a key", "K", "T").is_err());
        assert!(ProviderToken::new(PUBLIC.as_bytes(), "K", "T").is_err());
    }
}
