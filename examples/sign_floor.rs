//! Baseline for the RS256 client-credentials benchmark (`bench/run.sh`): an axum server whose every
//! request answers one RS256 JWT with claims shaped like an access token, signed the way Latchkey's key
//! ring signs (aws-lc-rs, RSA-2048 PKCS#1 v1.5 SHA-256, the key parsed once). RS256 signing (~1.6 ms)
//! dominates such a token request, so the token endpoint's RS256 throughput is reported as a ratio to
//! this floor.
//!
//! Run: `SIGN_LISTEN=127.0.0.1:8092 cargo run --release --example sign_floor`.

use std::sync::Arc;

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{RsaKeyPair, RSA_PKCS1_SHA256},
};
use axum::{extract::State, routing::any, Router};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

const DEFAULT_LISTEN: &str = "127.0.0.1:8092";

async fn sign(State(key): State<Arc<RsaKeyPair>>) -> String {
    let now = latchkey::clock::system_now() / 1000;
    let claims = serde_json::json!({
        "iss": "http://localhost/", "sub": "bench@clients", "aud": "https://bench/rs", "azp": "bench",
        "scope": "read:bench", "iat": now, "exp": now + 86_400, "jti": latchkey::crypto::random_alphanumeric(24),
        "gty": "client-credentials",
    });
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"bench","typ":"at+jwt"}"#);
    let mut token = format!("{header}.{}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default()));
    let mut signature = vec![0; key.public_modulus_len()];
    if key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), token.as_bytes(), &mut signature).is_err() {
        return String::new();
    }
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    format!("{{\"access_token\":\"{token}\",\"token_type\":\"Bearer\",\"expires_in\":86400}}")
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::var("SIGN_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.to_owned());
    let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)?;
    let app = Router::new().fallback(any(sign)).with_state(Arc::new(key));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
