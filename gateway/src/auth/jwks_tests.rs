//! Tests of the external issuer's tokens: verification by `kid`, keys refused at load, and a
//! rewritten JWKS file taken (or, when broken, not) by a running gateway.

use super::jwks::{JwksError, Keys, MAX_JWKS_BYTES};
use super::*;
use base64::Engine;

/// Tokens of an external issuer verify against its JWKS by `kid`; an unknown `kid`, a
/// wrong issuer or audience, or a key not in the set are refused, and no token is issued.
#[test]
fn external_issuer_tokens_verify_by_kid() {
    let secret = b"an external issuer's shared secret";
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let jwks = serde_json::json!({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": k}]});
    let dir = std::env::temp_dir().join(format!("chatmesh-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let cfg = GatewayConfig {
        jwks_file: Some(path),
        jwt_issuer: "https://idp.example".into(),
        jwt_audience: Some("chatmesh".into()),
        ..GatewayConfig::default()
    };
    let tokens = Tokens::from_config(&cfg).unwrap();
    assert!(
        tokens.issue("ann", 0).is_none(),
        "an external issuer issues the tokens"
    );
    let sign = |kid: &str, iss: &str, aud: &str, key: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.into());
        let claims = serde_json::json!({"sub": "ann", "iss": iss, "aud": aud, "iat": now_secs(), "exp": now_secs() + 60});
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key)).unwrap()
    };
    let good = sign("k1", "https://idp.example", "chatmesh", secret);
    let id = tokens.verify(&good).unwrap();
    assert_eq!(id.user, "ann");
    assert_eq!(id.gen, None, "external tokens carry no generation");
    assert!(tokens
        .verify(&sign("k2", "https://idp.example", "chatmesh", secret))
        .is_err());
    assert!(tokens
        .verify(&sign("k1", "https://evil.example", "chatmesh", secret))
        .is_err());
    assert!(tokens
        .verify(&sign("k1", "https://idp.example", "other", secret))
        .is_err());
    assert!(tokens
        .verify(&sign(
            "k1",
            "https://idp.example",
            "chatmesh",
            b"another key"
        ))
        .is_err());
    let _ = std::fs::remove_dir_all(dir);
}

/// How long a test waits for the gateway to notice a rewritten JWKS file (it checks every
/// few seconds).
const NOTICE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

const ISSUER: &str = "https://idp.example";

/// A fresh directory for one test's JWKS file.
fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chatmesh-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An HS256 JWK of `secret` named `kid`, with `extra` members merged in.
fn oct(kid: &str, secret: &[u8], extra: serde_json::Value) -> serde_json::Value {
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let mut jwk = serde_json::json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": k});
    for (name, value) in extra.as_object().into_iter().flatten() {
        jwk[name] = value.clone();
    }
    jwk
}

fn set(keys: &[serde_json::Value]) -> String {
    serde_json::json!({ "keys": keys }).to_string()
}

/// The external issuer's gateway reading the JWKS at `path`.
fn external(path: &std::path::Path) -> Result<Tokens, AuthError> {
    Tokens::from_config(&GatewayConfig {
        jwks_file: Some(path.to_owned()),
        jwt_issuer: ISSUER.into(),
        jwt_audience: Some("chatmesh".into()),
        ..GatewayConfig::default()
    })
}

/// A token for ann signed under `kid` with `key` by the algorithm `alg`.
fn token(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let claims = serde_json::json!({"sub": "ann", "iss": ISSUER, "aud": "chatmesh", "iat": now_secs(), "exp": now_secs() + 600});
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn hs(kid: &str, secret: &[u8]) -> String {
    token(Algorithm::HS256, kid, &EncodingKey::from_secret(secret))
}

/// Writes `text` to `path` the way careful operators do: a temporary file renamed over it.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Verifies `tokens` until `done` says so or [`NOTICE_DEADLINE`] passes; whether it did.
async fn until(tokens: &Tokens, mut done: impl FnMut(&Tokens) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + NOTICE_DEADLINE;
    while tokio::time::Instant::now() < deadline {
        if done(tokens) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    done(tokens)
}

/// A JWKS file rewritten in place (same length, same modification time) without k1 and
/// with k2 is noticed without a restart: k1's tokens are refused from then on (a leaked
/// key removed) and k2's accepted (a new key added); on a gateway that checked no token
/// meanwhile, already the first check once the check interval has passed.
#[tokio::test]
async fn a_rewritten_jwks_file_is_used_without_a_restart() {
    let dir = test_dir("jwks-rotate");
    let path = dir.join("jwks.json");
    let (s1, s2) = (
        b"the first key of the issuer, 32b",
        b"the second key of the issuer 32b",
    );
    std::fs::write(&path, set(&[oct("k1", s1, serde_json::json!({}))])).unwrap();
    let tokens = external(&path).unwrap();
    let loaded = tokio::time::Instant::now();
    let (t1, t2) = (hs("k1", s1), hs("k2", s2));
    assert_eq!(tokens.verify(&t1).unwrap().user, "ann");
    assert!(tokens.verify(&t2).is_err(), "k2 is not in the set yet");

    let before = std::fs::metadata(&path).unwrap();
    let rotated = set(&[oct("k2", s2, serde_json::json!({}))]);
    assert_eq!(rotated.len() as u64, before.len(), "same length on purpose");
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::io::Write::write_all(&mut &file, rotated.as_bytes()).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    drop(file);

    // A quiet gateway: no token checked until a check of the file is due.
    tokio::time::sleep_until(loaded + jwks::CHECK_INTERVAL).await;
    assert!(
        matches!(tokens.verify(&t1), Err(AuthError::UnknownKey)),
        "the removed k1 still verifies"
    );
    assert_eq!(tokens.verify(&t2).unwrap().user, "ann", "the added k2");
    let _ = std::fs::remove_dir_all(dir);
}

/// A half-written (unparseable) or emptied JWKS file is not taken: the last good keys go
/// on verifying, and a good file written afterwards is taken.
#[tokio::test]
async fn a_broken_jwks_rewrite_keeps_the_last_good_keys() {
    let dir = test_dir("jwks-broken");
    let path = dir.join("jwks.json");
    let (s1, s3) = (
        b"the first key of the issuer, 32b",
        b"the third key of the issuer, 32b",
    );
    let good = set(&[oct("k1", s1, serde_json::json!({}))]);
    std::fs::write(&path, &good).unwrap();
    let tokens = external(&path).unwrap();
    let (t1, t3) = (hs("k1", s1), hs("k3", s3));
    assert!(tokens.verify(&t1).is_ok());

    let failures = |t: &Tokens| match &t.verifier {
        Verifier::Jwks(jwks) => jwks.failures(),
        Verifier::Hs256(_) => 0,
    };
    for broken in [&good[..good.len() / 2], ""] {
        let before = failures(&tokens);
        std::fs::write(&path, broken).unwrap();
        let refused = until(&tokens, |t| {
            assert!(t.verify(&t1).is_ok(), "{broken:?} dropped the good keys");
            failures(t) > before
        })
        .await;
        assert!(refused, "{broken:?} was never checked");
        assert!(
            tokens.verify(&t1).is_ok(),
            "{broken:?} dropped the good keys"
        );
    }

    replace(&path, &set(&[oct("k3", s3, serde_json::json!({}))]));
    let noticed = until(&tokens, |t| t.verify(&t3).is_ok() && t.verify(&t1).is_err()).await;
    assert!(noticed, "the good file after the broken ones was not taken");
    let _ = std::fs::remove_dir_all(dir);
}

/// A JWK without `alg`, or with one this gateway does not verify, makes the whole file
/// refused with an error naming the key, unless its curve names the algorithm (P-256:
/// ES256); nothing falls back to RS256.
#[test]
fn a_jwk_without_a_known_alg_is_refused_at_load() {
    let dir = test_dir("jwks-alg");
    let path = dir.join("jwks.json");
    let secret = b"an external issuer's shared secret";
    let rsa = serde_json::json!({"kty": "RSA", "kid": "r1", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
    let unnamed = [
        rsa,
        serde_json::json!({"kty": "oct", "kid": "o1", "k": "c2VjcmV0"}),
        oct("o2", secret, serde_json::json!({"alg": "HS999"})),
        oct("o3", secret, serde_json::json!({"alg": "RS256"})),
    ];
    for jwk in unnamed {
        let kid = jwk["kid"].as_str().unwrap().to_owned();
        std::fs::write(&path, set(&[jwk])).unwrap();
        let err = external(&path).expect_err(&kid);
        let chain = crate::error::Chain(&err).to_string();
        assert!(chain.contains(&format!("\"{kid}\"")), "{chain}");
    }

    let pkcs8 = base64::engine::general_purpose::STANDARD
        .decode(EC_PKCS8)
        .unwrap();
    let es = EncodingKey::from_ec_der(&pkcs8);
    std::fs::write(
        &path,
        set(&[serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "e1", "x": EC_X, "y": EC_Y})]),
    )
    .unwrap();
    let tokens = external(&path).unwrap();
    assert!(tokens.verify(&token(Algorithm::ES256, "e1", &es)).is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

/// Keys of the set that say they are not for verifying signatures (`use` other than
/// "sig", `key_ops` without "verify") verify nothing; the others do.
#[test]
fn keys_not_meant_for_signatures_verify_nothing() {
    let dir = test_dir("jwks-use");
    let path = dir.join("jwks.json");
    let s = b"an external issuer's shared secret";
    let keys = [
        oct("enc", s, serde_json::json!({"use": "enc"})),
        oct("sign-only", s, serde_json::json!({"key_ops": ["sign"]})),
        oct("sig", s, serde_json::json!({"use": "sig"})),
        oct(
            "verify",
            s,
            serde_json::json!({"key_ops": ["sign", "verify"]}),
        ),
    ];
    std::fs::write(&path, set(&keys)).unwrap();
    let tokens = external(&path).unwrap();
    assert!(tokens.verify(&hs("enc", s)).is_err(), "use: enc");
    assert!(
        tokens.verify(&hs("sign-only", s)).is_err(),
        "key_ops without verify"
    );
    assert!(tokens.verify(&hs("sig", s)).is_ok());
    assert!(tokens.verify(&hs("verify", s)).is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

/// A JWKS file over [`jwks::MAX_JWKS_BYTES`] is refused without being read whole.
#[test]
fn an_oversized_file_is_refused() {
    let dir = std::env::temp_dir().join(format!("chatmesh-jwks-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    let padding = " ".repeat(MAX_JWKS_BYTES as usize);
    std::fs::write(&path, format!("{{\"keys\": []}}{padding}")).unwrap();
    assert!(matches!(Jwks::load(&path), Err(JwksError::TooLarge)));
    let _ = std::fs::remove_dir_all(dir);
}

/// Two signature keys under one `kid`, or an EC key whose `alg` names another curve, make
/// the set refused; an encryption key beside a signature key of the same `kid` does not.
#[test]
fn ambiguous_sets_are_refused() {
    let oct = |kid: &str, extra: &str| {
        format!(r#"{{"kty": "oct", "kid": "{kid}", "alg": "HS256", "k": "c2VjcmV0"{extra}}}"#)
    };
    let set = |keys: &[String]| format!(r#"{{"keys": [{}]}}"#, keys.join(","));
    let twice = set(&[oct("a", ""), oct("a", "")]);
    assert!(matches!(
        Keys::parse(twice.as_bytes()),
        Err(JwksError::DuplicateKid { .. })
    ));
    let beside = set(&[oct("a", r#", "use": "enc""#), oct("a", "")]);
    assert!(Keys::parse(beside.as_bytes()).unwrap().get("a").is_some());
    let curve = r#"{"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES384", "kid": "e", "x": "AA", "y": "AA"}]}"#;
    assert!(matches!(
        Keys::parse(curve.as_bytes()),
        Err(JwksError::WrongKeyType { .. })
    ));
}

/// A throwaway P-256 key of these tests (PKCS#8 DER, base64) and its public point.
const EC_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSeTejE1gJg3rD6WLI7G+yCSoQQBddVVc3pdBG+SERYShRANCAARi8hjq+6cCOtgtccJT8+30FBsFumjPHBcu9fPriO7iaI/3Jnce4hIMpNM9fyPa1in0ttfyCq0jbwg5Q1WJac4x";
const EC_X: &str = "YvIY6vunAjrYLXHCU_Pt9BQbBbpozxwXLvXz64ju4mg";
const EC_Y: &str = "j_cmdx7iEgyk0z1_I9rWKfS21_IKrSNvCDlDVYlpzjE";
