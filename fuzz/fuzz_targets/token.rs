//! Token verification on arbitrary strings: it never panics and never accepts a token that
//! was not signed with the gateway's secret.
#![no_main]

use chatmesh_gateway::auth::Tokens;
use chatmesh_gateway::GatewayConfig;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let cfg = GatewayConfig {
            jwt_secret: "fuzz-secret-fuzz-secret-fuzz-secret".into(),
            ..GatewayConfig::default()
        };
        Tokens::from_config(&cfg).expect("tokens")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    assert!(tokens().verify(s).is_err(), "accepted a forged token {s:?}");
});
