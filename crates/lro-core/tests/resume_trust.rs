//! A continuation token is untrusted input that names where polls go: with credentials on the
//! polls, it is resumed only towards an origin the user vouched for, or when it carries a valid
//! signature.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::{HeaderName, HeaderValue};
use lro_core::token::TokenState;
use lro_core::{
    ContinuationToken, Engine, LroError, OriginPolicy, PollOptions, PollOptionsBuilder, TokenKey,
};
use support::{Monitor, started};

/// A token whose initial request was on `http://svc`, as our engine writes it.
fn honest_token(key: Option<&TokenKey>) -> ContinuationToken {
    let mut options = PollOptions::builder();
    if let Some(key) = key {
        options = options.token_key(key.clone());
    }
    let engine = Engine::start(Monitor::default(), options.build(), started("PUT", "")).unwrap();
    engine.continuation_token().unwrap()
}

/// A token written by someone else, naming `http://evil.example` for everything.
fn forged_token() -> ContinuationToken {
    let mut state = TokenState::new(&started("PUT", ""), None);
    if let Some(request) = state.request.as_mut() {
        request.url = "http://evil.example/widgets/1".into();
    }
    state.response.headers.insert("operation-location".into(), "http://evil.example/op".into());
    ContinuationToken::encode(&state).unwrap()
}

fn with_credential(builder: PollOptionsBuilder) -> PollOptionsBuilder {
    builder.header(HeaderName::from_static("authorization"), HeaderValue::from_static("Bearer x"))
}

fn resume(options: PollOptionsBuilder, token: &ContinuationToken) -> Result<(), LroError> {
    Engine::resume(Monitor::default(), options.build(), token).map(|_| ())
}

fn key() -> TokenKey {
    TokenKey::new(b"a test key, sixteen bytes or more").unwrap()
}

#[test]
fn a_forged_origin_is_refused_when_polls_carry_credentials() {
    let error = resume(with_credential(PollOptions::builder()), &forged_token()).unwrap_err();
    assert!(matches!(error, LroError::Policy(_)), "{error:?}");
    assert!(error.chain().to_string().contains("http://evil.example"), "names the origin: {error}");
}

#[test]
fn every_kind_of_credential_counts() {
    let mut marked = HeaderValue::from_static("secret");
    marked.set_sensitive(true);
    let credentials = [
        ("cookie", HeaderValue::from_static("s=1")),
        ("api-key", HeaderValue::from_static("k")),
        ("ocp-apim-subscription-key", HeaderValue::from_static("k")),
        ("x-ms-storage-key", HeaderValue::from_static("k")),
        ("proxy-authorization", HeaderValue::from_static("Basic x")),
        ("x-custom-token", marked),
        ("x-api-key", HeaderValue::from_static("k")),
        ("x-ms-authorization-auxiliary", HeaderValue::from_static("Bearer t")),
        ("x-tenant", HeaderValue::from_static("Bearer t")),
    ];
    for (name, value) in credentials {
        let options = PollOptions::builder().header(HeaderName::from_static(name), value);
        assert!(resume(options, &forged_token()).is_err(), "{name}");
    }
    let client_adds_its_own = PollOptions::builder().client_sends_credentials(true);
    assert!(resume(client_adds_its_own, &forged_token()).is_err());
}

#[test]
fn signed_tokens_only_refuses_an_unsigned_token_even_without_credentials() {
    let strict = || PollOptions::builder().token_key(key()).signed_tokens_only(true);
    let error = resume(strict(), &forged_token()).unwrap_err();
    assert!(matches!(error, LroError::InvalidContinuationToken(_)), "{error:?}");
    assert!(resume(strict(), &honest_token(None)).is_err(), "unsigned, though honest");
    assert!(resume(strict(), &honest_token(Some(&key()))).is_ok(), "signed with the key");
}

#[test]
fn without_credentials_any_token_resumes_as_in_azure_core() {
    assert!(resume(PollOptions::builder(), &forged_token()).is_ok());
    let harmless = PollOptions::builder()
        .header(HeaderName::from_static("x-tenant"), HeaderValue::from_static("contoso"));
    assert!(resume(harmless, &forged_token()).is_ok());
}

#[test]
fn an_origin_vouched_for_by_name_is_trusted() {
    let pinned = OriginPolicy::pinned("http://evil.example").unwrap();
    assert!(
        resume(with_credential(PollOptions::builder().origins(pinned)), &forged_token()).is_ok()
    );
    let allowed = OriginPolicy::same_origin().allow("http://evil.example").unwrap();
    assert!(
        resume(with_credential(PollOptions::builder().origins(allowed)), &forged_token()).is_ok()
    );
    let elsewhere = OriginPolicy::pinned("http://svc").unwrap();
    let refused =
        resume(with_credential(PollOptions::builder().origins(elsewhere)), &forged_token());
    assert!(matches!(refused, Err(LroError::Policy(_))));
}

#[test]
fn a_signed_token_is_trusted_and_an_unsigned_one_is_held_to_the_rule() {
    let signed = honest_token(Some(&key()));
    assert!(resume(with_credential(PollOptions::builder().token_key(key())), &signed).is_ok());
    // The same token without the key proves nothing about its origin.
    assert!(resume(with_credential(PollOptions::builder()), &signed).is_err());
    // An unsigned token, even our own, is held to the origin rule when a key is configured.
    let unsigned = honest_token(None);
    assert!(resume(with_credential(PollOptions::builder().token_key(key())), &unsigned).is_err());
}

#[test]
fn a_signed_token_that_was_altered_is_refused_before_anything_is_sent() {
    use base64::Engine as _;
    let signed = honest_token(Some(&key()));
    let json = base64::engine::general_purpose::STANDARD.decode(signed.as_str()).unwrap();
    let json =
        String::from_utf8(json).unwrap().replace("http://svc/widgets/1", "http://svc/widgets/2");
    let altered =
        ContinuationToken::from_string(base64::engine::general_purpose::STANDARD.encode(json));
    // No credentials at all: the broken signature alone is enough to refuse it.
    let error = resume(PollOptions::builder().token_key(key()), &altered).unwrap_err();
    assert!(matches!(error, LroError::InvalidContinuationToken(_)), "{error:?}");
}

#[test]
fn signed_tokens_keep_signing_as_polling_goes_on() {
    let options = PollOptions::builder().token_key(key()).build();
    let mut engine =
        Engine::resume(Monitor::default(), options, &honest_token(Some(&key()))).unwrap();
    let _ = engine.poll(lro_core::Timer::now(&lro_core::test_util::ManualClock::new()));
    let token = engine.continuation_token().unwrap();
    let (_, integrity): (TokenState, _) = token.decode_verified(&key()).unwrap();
    assert_eq!(integrity, lro_core::TokenIntegrity::Verified);
}

#[test]
fn a_token_from_elsewhere_is_never_signed_on_its_way_through() {
    // Resumed without credentials (allowed), with a key configured: the tokens it hands out
    // stay unsigned, or the next resume would trust the forged origin with credentials.
    let options = PollOptions::builder().token_key(key()).build();
    let engine = Engine::resume(Monitor::default(), options, &forged_token()).unwrap();
    let passed_on = engine.continuation_token().unwrap();
    let (_, integrity): (TokenState, _) = passed_on.decode_verified(&key()).unwrap();
    assert_eq!(integrity, lro_core::TokenIntegrity::Unsigned);
    let refused = resume(with_credential(PollOptions::builder().token_key(key())), &passed_on);
    assert!(matches!(refused, Err(LroError::Policy(_))), "{refused:?}");

    // Vouched for by name: then signing is fine.
    let pinned = OriginPolicy::pinned("http://evil.example").unwrap();
    let options = PollOptions::builder().token_key(key()).origins(pinned).build();
    let engine = Engine::resume(Monitor::default(), options, &forged_token()).unwrap();
    let (_, integrity): (TokenState, _) =
        engine.continuation_token().unwrap().decode_verified(&key()).unwrap();
    assert_eq!(integrity, lro_core::TokenIntegrity::Verified);
}
