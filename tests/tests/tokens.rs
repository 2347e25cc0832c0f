//! Access tokens (the console's sign-in, scripts' bearer tokens): the secret is shown
//! once and stored only as its hash; a token signs its user in with the user's role
//! of the moment until it expires or is revoked; making and revoking are audited;
//! bad input is a typed error with nothing written; concurrent makers get distinct
//! tokens.

use chrono::TimeDelta;
use service::accounts::{
    self, AccountError, NewUser, Role, TokenRefusal, authenticate, create_token, revoke_token,
};
use tests::TestDb;
use uuid::Uuid;

async fn user(t: &TestDb, email: &str, role: Role) -> Uuid {
    accounts::create_user(&t.db, NewUser::new(email, "!").with_role(role))
        .await
        .expect("user")
        .id
}

#[tokio::test]
async fn a_token_signs_its_user_in_until_it_is_revoked() {
    let t = TestDb::new().await;
    let admin = user(&t, "admin@example.org", Role::Admin).await;
    let moderator = user(&t, "mod@example.org", Role::Moderator).await;
    let made = create_token(&t.db, moderator, Some("console"), TimeDelta::hours(1), None)
        .await
        .expect("token");
    assert!(made.secret.starts_with(accounts::TOKEN_PREFIX));
    assert_eq!(made.token.user_id, moderator);
    // Only the hash is stored.
    assert_eq!(
        t.scalar(&format!(
            "SELECT count(*) FROM access_tokens WHERE token_hash = encode(sha256('{}'::bytea), 'hex')",
            made.secret
        ))
        .await,
        "1"
    );
    assert_eq!(
        t.scalar(&format!(
            "SELECT count(*) FROM access_tokens t WHERE row_to_json(t)::text LIKE '%{}%'",
            &made.secret[7..]
        ))
        .await,
        "0",
        "the secret is nowhere in the row"
    );

    let signed_in = authenticate(&t.db, &made.secret).await.expect("sign in");
    assert_eq!(
        (signed_in.user_id, signed_in.role, signed_in.email.as_str()),
        (moderator, Role::Moderator, "mod@example.org")
    );
    assert_eq!(
        t.scalar("SELECT (last_used_at IS NOT NULL)::text FROM access_tokens")
            .await,
        "true"
    );
    // A role change applies to the token at once.
    accounts::change_user_role(&t.db, moderator, Role::User, admin)
        .await
        .expect("demote");
    assert_eq!(
        authenticate(&t.db, &made.secret)
            .await
            .expect("sign in")
            .role,
        Role::User
    );

    assert!(
        revoke_token(&t.db, made.token.id, Some(admin))
            .await
            .expect("revoke")
    );
    assert!(matches!(
        authenticate(&t.db, &made.secret).await,
        Err(AccountError::TokenRefused(TokenRefusal::Revoked))
    ));
    assert!(
        !revoke_token(&t.db, made.token.id, Some(admin))
            .await
            .expect("again"),
        "a revoked token is not live"
    );
    assert_eq!(
        t.column(
            "SELECT event_type || ' ' || coalesce(user_id::text, '-') FROM audit_logs
             WHERE event_type LIKE 'token.%' ORDER BY created_at"
        )
        .await,
        [
            format!("token.created {moderator}"),
            format!("token.revoked {admin}")
        ]
    );
    let listed = accounts::list_tokens(&t.db, moderator).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked_at.is_some());
}

#[tokio::test]
async fn an_expired_or_unknown_token_is_refused() {
    let t = TestDb::new().await;
    let someone = user(&t, "someone@example.org", Role::User).await;
    let made = create_token(&t.db, someone, None, TimeDelta::hours(1), None)
        .await
        .expect("token");
    t.sql(&format!(
        "UPDATE access_tokens SET created_at = now() - interval '2 hours',
                                  expires_at = now() - interval '1 second'
         WHERE id = '{}'",
        made.token.id
    ))
    .await;
    assert!(matches!(
        authenticate(&t.db, &made.secret).await,
        Err(AccountError::TokenRefused(TokenRefusal::Expired))
    ));
    for secret in [
        "strata_0000000000000000000000000000000000000000000000000000000000000000",
        "not a token",
        "",
    ] {
        assert!(
            matches!(
                authenticate(&t.db, secret).await,
                Err(AccountError::TokenRefused(TokenRefusal::Unknown))
            ),
            "{secret:?}"
        );
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let t = TestDb::new().await;
    let someone = user(&t, "someone@example.org", Role::User).await;
    for lifetime in [
        TimeDelta::zero(),
        TimeDelta::seconds(-5),
        TimeDelta::days(400),
    ] {
        assert!(
            matches!(
                create_token(&t.db, someone, None, lifetime, None).await,
                Err(AccountError::Invalid(ref i)) if i.field == "lifetime"
            ),
            "{lifetime:?}"
        );
    }
    for name in ["", "   ", &"x".repeat(201)] {
        assert!(matches!(
            create_token(&t.db, someone, Some(name), TimeDelta::hours(1), None).await,
            Err(AccountError::Invalid(ref i)) if i.field == "name"
        ));
    }
    let nobody = Uuid::new_v4();
    assert!(matches!(
        create_token(&t.db, nobody, None, TimeDelta::hours(1), None).await,
        Err(AccountError::UnknownUser(id)) if id == nobody
    ));
    assert_eq!(t.scalar("SELECT count(*) FROM access_tokens").await, "0");
    assert_eq!(
        t.scalar("SELECT count(*) FROM audit_logs WHERE event_type LIKE 'token.%'")
            .await,
        "0"
    );
}

#[tokio::test]
async fn concurrent_makers_get_distinct_tokens_that_all_sign_in() {
    let t = TestDb::new().await;
    let someone = user(&t, "someone@example.org", Role::User).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let db = t.db.clone();
            tokio::spawn(async move {
                create_token(&db, someone, None, TimeDelta::hours(1), None).await
            })
        })
        .collect();
    let mut secrets = Vec::new();
    for task in tasks {
        secrets.push(task.await.expect("join").expect("token").secret);
    }
    let distinct: std::collections::HashSet<_> = secrets.iter().collect();
    assert_eq!(distinct.len(), 20);
    let checks: Vec<_> = secrets
        .into_iter()
        .map(|secret| {
            let db = t.db.clone();
            tokio::spawn(async move { authenticate(&db, &secret).await })
        })
        .collect();
    for check in checks {
        assert_eq!(
            check.await.expect("join").expect("sign in").user_id,
            someone
        );
    }
    assert_eq!(t.scalar("SELECT count(*) FROM access_tokens").await, "20");
}
