//! `redacted_url` hides every password tokio-postgres would read from a store URL or a
//! `key=value` connection string, however the string is written, and keeps the rest readable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;

use lro_store::redacted_url;

/// The password tokio-postgres reads from `url`; `None` if it reads none or refuses the string.
fn password_postgres_reads(url: &str) -> Option<String> {
    let config = tokio_postgres::Config::from_str(url).ok()?;
    config.get_password().map(|p| String::from_utf8_lossy(p).into_owned())
}

/// `url`'s redaction shows no `secret`, and tokio-postgres really reads `secret` as the password
/// (the case is real, not made up).
fn assert_hidden_and_real(url: &str, secret: &str) {
    assert_eq!(
        password_postgres_reads(url).as_deref(),
        Some(secret),
        "tokio-postgres reads {secret:?} as the password of {url:?}"
    );
    assert_hidden(url, secret);
}

fn assert_hidden(url: &str, secret: &str) {
    let shown = redacted_url(url);
    assert!(!shown.contains(secret), "{url:?} redacted to {shown:?}, which shows {secret:?}");
    assert!(shown.contains("***"), "{url:?} redacted to {shown:?}, with no ***");
}

#[test]
fn a_password_with_a_slash_question_mark_or_hash_before_the_at_sign_is_hidden() {
    assert_hidden_and_real("postgres://lro:pa/ss@db/ops", "pa/ss");
    assert_hidden_and_real("postgres://lro:pa#ss@db/ops", "pa#ss");
    assert_hidden_and_real("postgres://lro:pa?ss@db/ops", "pa?ss");
    assert_hidden_and_real("postgresql://lro:s3/cr?e#t@db:5433/ops?sslmode=disable", "s3/cr?e#t");
    // The user name's own characters are no excuse either.
    assert_hidden_and_real("postgres://db/ops?x=1:s3cr3t@h/ops", "s3cr3t");
}

#[test]
fn redaction_keeps_the_scheme_host_and_database() {
    assert_eq!(redacted_url("postgres://lro:pa/ss@db/ops"), "postgres://lro:***@db/ops");
    assert_eq!(redacted_url("postgres://lro:pa#ss@db/ops"), "postgres://lro:***@db/ops");
    assert_eq!(
        redacted_url("postgres://lro:pa?ss@db:5433/ops?sslmode=disable"),
        "postgres://lro:***@db:5433/ops?sslmode=disable"
    );
    assert_eq!(
        redacted_url("postgres://db/ops?pass%77ord=s3cr3t&sslmode=disable"),
        "postgres://db/ops?pass%77ord=***&sslmode=disable"
    );
    assert_eq!(redacted_url("postgres://lro@db/ops"), "postgres://lro@db/ops");
    assert_eq!(
        redacted_url("postgres://lro:passw0rd@db/ops?sslmode=disable"),
        "postgres://lro:***@db/ops?sslmode=disable"
    );
    assert_eq!(redacted_url("sqlite:ops.db"), "sqlite:ops.db");
    assert_eq!(redacted_url("sqlite:/var/lib/lro/ops.db"), "sqlite:/var/lib/lro/ops.db");
    assert_eq!(redacted_url("host=db dbname=ops user=lro"), "host=db dbname=ops user=lro");
}

#[test]
fn a_percent_encoded_password_key_in_the_query_is_hidden() {
    assert_hidden_and_real("postgres://db/ops?pass%77ord=s3cr3t", "s3cr3t");
    assert_hidden_and_real("postgres://db/ops?%70%61%73%73%77%6f%72%64=s3cr3t", "s3cr3t");
    assert_hidden_and_real("postgres://lro@db/ops?sslmode=disable&passwor%64=s3cr3t", "s3cr3t");
    // After a `#`, which tokio-postgres does not treat as the start of a fragment.
    assert_hidden_and_real("postgres://db/ops#frag?password=s3cr3t", "s3cr3t");
}

#[test]
fn a_password_with_an_at_sign_is_hidden_however_the_url_is_split() {
    // tokio-postgres reads `pa` as the password and `ss@db` as the host; a URL parser reads
    // `pa@ss`: neither part is shown.
    assert_eq!(password_postgres_reads("postgres://lro:pa@ss@db/ops").as_deref(), Some("pa"));
    assert_hidden("postgres://lro:pa@ss@db/ops", "pa");
    assert_hidden("postgres://lro:pa@ss@db/ops", "ss");
    // tokio-postgres reads `db/ops?password=x7` as the user; the writer meant `x7@y9`.
    assert_hidden("postgres://db/ops?password=x7@y9", "x7");
    assert_hidden("postgres://db/ops?password=x7@y9", "y9");
}

#[test]
fn a_password_in_a_key_value_connection_string_is_hidden_quoted_or_not() {
    assert_hidden_and_real("host=db password=s3cr3t dbname=ops", "s3cr3t");
    assert_hidden_and_real("host=db password = 's3 cr3t' dbname=ops", "s3 cr3t");
    assert_hidden_and_real("host=db password='s3 cr3t'", "s3 cr3t");
    assert_hidden("host=db password='s3 cr3t'", "s3");
    assert_hidden("host=db password='s3 cr3t'", "cr3t");
    assert_hidden_and_real(r"host=db password='it\'s a secret'", "it's a secret");
    assert_hidden(r"host=db password='it\'s a secret'", "secret");
    assert_hidden_and_real(r"host=db password=s3\ cr3t", "s3 cr3t");
    assert_hidden(r"host=db password=s3\ cr3t", "cr3t");
    assert_hidden_and_real("password=s3cr3t", "s3cr3t");
    assert_hidden_and_real("host=db password=s3://cr3t", "s3://cr3t");
    assert_hidden_and_real("host=db password=s3cr3t://x", "s3cr3t://x");
    assert_hidden_and_real("host=db\tpassword\n=\ts3cr3t", "s3cr3t");
    // Unterminated: tokio-postgres refuses it, nothing after the key is shown anyway.
    assert_hidden("host=db password='s3 cr3t", "cr3t");
    assert_eq!(
        redacted_url("host=db password = 's3 cr3t' dbname=ops"),
        "host=db password = *** dbname=ops"
    );
}
