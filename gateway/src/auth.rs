//! Tokens: HS256 tokens issued to built-in accounts, or an external issuer's tokens checked
//! against its JWKS (by `kid`). The gateway only ever sees a user name after this module.
//!
//! Every token needs `exp`, `sub` and `iss`; `nbf`, when present, must have passed and
//! `iat` must not lie in the future (both with [`LEEWAY_SECS`]). Built-in tokens carry the
//! user's token generation (`gen`, absent in tokens issued before it existed: 0); tokens of
//! an external issuer have none, so `logout_all` revocation applies to built-in tokens only.
//! The external issuer's keys, and how a rewritten JWKS file is taken: [`jwks`].

pub mod jwks;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use self::jwks::{Jwks, JwksError};
use crate::config::GatewayConfig;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, seconds.
pub const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: u64,
    iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    /// The user's token generation when it was issued (built-in tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gen: Option<u64>,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Token generation of a built-in token (revoked when below the user's current one);
    /// `None` for an external issuer's token, which cannot be revoked here.
    pub gen: Option<u64>,
    /// The key id of an external issuer's token: its sessions close once the key leaves
    /// the key set ([`Tokens::knows_key`]).
    pub kid: Option<String>,
}

/// Why a token was refused (all map to `unauthorized`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token invalid")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("token issued in the future (iat {iat}, now {now})")]
    IssuedInFuture { iat: u64, now: u64 },
    #[error("token subject is not a valid user name")]
    BadSubject,
    #[error("unknown key id")]
    UnknownKey,
    #[error("the JWKS file cannot be used")]
    Jwks(#[from] JwksError),
}

enum Verifier {
    Hs256(DecodingKey),
    /// The external issuer's keys, taken again when its file changes.
    Jwks(Jwks),
}

/// Claims of a device token (extension): which account logged in on the device, and the
/// device's id (its own lockout's key).
#[derive(Debug, Serialize, Deserialize)]
struct DeviceClaims {
    sub: String,
    exp: u64,
    iat: u64,
    iss: String,
    jti: String,
    /// The account's token generation when it was issued: a `logout_all` or a password
    /// change (which raise it) makes the device unknown again.
    gen: u64,
}

/// What a device token handed back at login says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub user: String,
    /// The device's id: the key of its own lockout.
    pub id: String,
    /// The account's token generation when the token was issued.
    pub gen: u64,
}

/// Issues and verifies tokens.
pub struct Tokens {
    issuer: String,
    audience: Option<String>,
    ttl_secs: u64,
    encoding: Option<EncodingKey>,
    verifier: Verifier,
    /// Device tokens: HS256 under a key derived from the secret, so that neither kind of
    /// token passes for the other.
    devices: Option<(EncodingKey, DecodingKey)>,
    device_ttl_secs: u64,
}

/// The key of device tokens, derived from the built-in accounts' secret.
fn device_key(secret: &str) -> Vec<u8> {
    let mut key = b"chatmesh device token\0".to_vec();
    key.extend_from_slice(secret.as_bytes());
    key
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl Tokens {
    pub fn from_config(cfg: &GatewayConfig) -> Result<Self, AuthError> {
        let (encoding, verifier) = match &cfg.jwks_file {
            Some(path) => (None, Verifier::Jwks(Jwks::load(path)?)),
            None => (
                Some(EncodingKey::from_secret(cfg.jwt_secret.as_bytes())),
                Verifier::Hs256(DecodingKey::from_secret(cfg.jwt_secret.as_bytes())),
            ),
        };
        let devices = encoding.is_some().then(|| {
            let key = device_key(&cfg.jwt_secret);
            (
                EncodingKey::from_secret(&key),
                DecodingKey::from_secret(&key),
            )
        });
        Ok(Self {
            issuer: cfg.jwt_issuer.clone(),
            audience: cfg.jwt_audience.clone(),
            ttl_secs: cfg.token_ttl_secs,
            encoding,
            verifier,
            devices,
            device_ttl_secs: cfg.device_token_ttl_secs,
        })
    }

    /// A device token for a login of `user` at token generation `gen`: the device `id` a
    /// known device brought, or a new one; `None` when tokens come from an external issuer.
    pub fn issue_device(&self, user: &str, gen: u64, id: Option<&str>) -> Option<String> {
        let (key, _) = self.devices.as_ref()?;
        let now = now_secs();
        let claims = DeviceClaims {
            sub: user.to_owned(),
            iat: now,
            exp: now + self.device_ttl_secs,
            iss: self.issuer.clone(),
            jti: id.map_or_else(|| format!("{:032x}", rand::random::<u128>()), str::to_owned),
            gen,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).ok()
    }

    /// What every token of this deployment must meet: `alg`, `exp`, `sub` and our issuer,
    /// with [`LEEWAY_SECS`] of clock skew.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation
    }

    /// The device a device token names, if it is one of this deployment's and unexpired.
    pub fn verify_device(&self, token: &str) -> Option<Device> {
        let (_, key) = self.devices.as_ref()?;
        let mut validation = self.validation(Algorithm::HS256);
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<DeviceClaims>(token, key, &validation).ok()?;
        let c = data.claims;
        let sane = c.jti.len() == 32 && c.iat <= now_secs() + LEEWAY_SECS;
        sane.then_some(Device {
            user: c.sub,
            id: c.jti,
            gen: c.gen,
        })
    }

    /// Whether this gateway issues tokens (built-in accounts), or takes an external issuer's.
    pub fn issues(&self) -> bool {
        self.encoding.is_some()
    }

    /// Issues a token for `user` at token generation `gen`; `None` when tokens come from an
    /// external issuer.
    pub fn issue(&self, user: &str, gen: u64) -> Option<(String, u64)> {
        let key = self.encoding.as_ref()?;
        let now = now_secs();
        let claims = Claims {
            sub: user.to_owned(),
            iat: now,
            exp: now + self.ttl_secs,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            nbf: None,
            gen: Some(gen),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).ok()?;
        Some((token, claims.exp))
    }

    /// Verifies a token and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let keys;
        let mut key_id = None;
        let (key, alg) = match &self.verifier {
            Verifier::Hs256(key) => (key, Algorithm::HS256),
            Verifier::Jwks(jwks) => {
                let header = jsonwebtoken::decode_header(token).map_err(AuthError::Invalid)?;
                let kid = header.kid.ok_or(AuthError::UnknownKey)?;
                keys = jwks.keys();
                let (key, alg) = keys.get(&kid).ok_or(AuthError::UnknownKey)?;
                key_id = Some(kid);
                (key, *alg)
            }
        };
        let mut validation = self.validation(alg);
        validation.validate_nbf = true;
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(AuthError::Invalid)?;
        chatmesh_protocol::validate_name("user", &data.claims.sub)
            .map_err(|_| AuthError::BadSubject)?;
        let now = now_secs();
        if data.claims.iat > now + LEEWAY_SECS {
            return Err(AuthError::IssuedInFuture {
                iat: data.claims.iat,
                now,
            });
        }
        let gen = match self.verifier {
            Verifier::Hs256(_) => Some(data.claims.gen.unwrap_or(0)),
            Verifier::Jwks(_) => None,
        };
        Ok(Identity {
            user: data.claims.sub,
            expires_at: data.claims.exp,
            gen,
            kid: key_id,
        })
    }

    /// Whether an external issuer's key `kid` is in the key set now (the file is read
    /// again when due); always true for built-in tokens.
    pub fn knows_key(&self, kid: &str) -> bool {
        match &self.verifier {
            Verifier::Hs256(_) => true,
            Verifier::Jwks(jwks) => jwks.keys().get(kid).is_some(),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str) -> Tokens {
        let cfg = GatewayConfig {
            jwt_secret: secret.into(),
            ..GatewayConfig::default()
        };
        Tokens::from_config(&cfg).unwrap()
    }

    #[test]
    fn issued_tokens_verify() {
        let t = tokens(&"k".repeat(32));
        let (tok, exp) = t.issue("ann", 7).unwrap();
        let id = t.verify(&tok).unwrap();
        assert_eq!(id.user, "ann");
        assert_eq!(id.expires_at, exp);
        assert_eq!(id.gen, Some(7), "the generation round-trips");
    }

    /// Device tokens name their account, generation and device id; neither kind of token passes
    /// for the other, nor does another deployment's (another secret) device token.
    #[test]
    fn device_tokens_are_apart_from_access_tokens() {
        let t = tokens(&"d".repeat(32));
        let one = t.issue_device("ann", 3, None).unwrap();
        let two = t.issue_device("ann", 3, None).unwrap();
        let (a, b) = (
            t.verify_device(&one).unwrap(),
            t.verify_device(&two).unwrap(),
        );
        assert_eq!((a.user.as_str(), b.user.as_str()), ("ann", "ann"));
        assert_eq!((a.gen, b.gen), (3, 3));
        assert_ne!(a.id, b.id, "a new device id for a new device");
        let again = t.issue_device("ann", 4, Some(&a.id)).unwrap();
        let c = t.verify_device(&again).unwrap();
        assert_eq!(
            (c.id.as_str(), c.gen),
            (a.id.as_str(), 4),
            "a known device keeps its id"
        );
        assert!(t.verify(&one).is_err(), "a device token is no access token");
        let (access, _) = t.issue("ann", 0).unwrap();
        assert!(
            t.verify_device(&access).is_none(),
            "an access token is no device token"
        );
        assert!(tokens(&"e".repeat(32)).verify_device(&one).is_none());
        assert!(t.verify_device("not.a.token").is_none());
    }

    /// A built-in token signed with `claims` (any JSON).
    fn signed(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn nbf_in_the_future_fails_and_in_the_past_passes() {
        let secret = "n".repeat(32);
        let now = now_secs();
        let claims = |nbf: u64| serde_json::json!({"sub": "ann", "iss": "chatmesh", "iat": now, "exp": now + 600, "nbf": nbf});
        let later = signed(&secret, claims(now + 120));
        assert!(tokens(&secret).verify(&later).is_err(), "not yet valid");
        let within_leeway = signed(&secret, claims(now + 2));
        assert!(tokens(&secret).verify(&within_leeway).is_ok());
        let past = signed(&secret, claims(now - 60));
        assert!(tokens(&secret).verify(&past).is_ok());
    }

    #[test]
    fn a_bad_signature_keeps_the_jwt_error_as_its_source() {
        let token = signed(&"a".repeat(32), serde_json::json!({"sub": "ann"}));
        let err = tokens(&"b".repeat(32)).verify(&token).unwrap_err();
        assert!(matches!(err, AuthError::Invalid(_)), "{err:?}");
        let chain = crate::error::Chain(&err).to_string();
        assert!(chain.starts_with("token invalid: "), "{chain}");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn iat_in_the_future_fails() {
        let secret = "i".repeat(32);
        let now = now_secs();
        let claims = |iat: u64| serde_json::json!({"sub": "ann", "iss": "chatmesh", "iat": iat, "exp": now + 600});
        let future = signed(&secret, claims(now + 120));
        assert!(matches!(
            tokens(&secret).verify(&future),
            Err(AuthError::IssuedInFuture { .. })
        ));
        assert!(tokens(&secret)
            .verify(&signed(&secret, claims(now + 2)))
            .is_ok());
    }

    #[test]
    fn exp_is_required() {
        let secret = "e".repeat(32);
        let now = now_secs();
        let no_exp = signed(
            &secret,
            serde_json::json!({"sub": "ann", "iss": "chatmesh", "iat": now}),
        );
        assert!(tokens(&secret).verify(&no_exp).is_err());
        let with_exp = signed(
            &secret,
            serde_json::json!({"sub": "ann", "iss": "chatmesh", "iat": now, "exp": now + 60}),
        );
        let id = tokens(&secret).verify(&with_exp).unwrap();
        assert_eq!(
            id.gen,
            Some(0),
            "a built-in token without gen is generation 0"
        );
    }

    #[test]
    fn forged_and_garbage_tokens_fail() {
        let (tok, _) = tokens(&"a".repeat(32)).issue("ann", 0).unwrap();
        assert!(tokens(&"b".repeat(32)).verify(&tok).is_err());
        assert!(tokens(&"b".repeat(32)).verify("not.a.token").is_err());
        assert!(tokens(&"b".repeat(32)).verify("").is_err());
    }

    #[test]
    fn expired_tokens_fail() {
        let secret = "s".repeat(32);
        let claims = Claims {
            sub: "ann".into(),
            iat: 1,
            exp: 1000,
            iss: "chatmesh".into(),
            aud: None,
            nbf: None,
            gen: None,
        };
        let tok = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert!(tokens(&secret).verify(&tok).is_err());
    }
}

#[cfg(test)]
mod jwks_tests;
